#!/usr/bin/env bash
# Self-guidance's trade-off on captioned shapes (its paper's Fig. 3 analog): uniform@16 at token temperatures
# 0.5 / 1 / 1.5 / 2 under no guidance, CFG 3, self-guidance s = 1 and both, 200 VALIDATION captions, the same
# captions and seeds in every row; then plot.py draws one curve per guidance. Committed run: 2026-12-06.
cd "$(dirname "$0")/../../.."
grid=""
for t in 0.5 1.0 1.5 2.0; do
  for g in "guidance_scale=0.0" "guidance_scale=3.0" "guidance_scale=0.0,self_guidance_scale=1.0" "guidance_scale=3.0,self_guidance_scale=1.0"; do
    grid="$grid'uniform@16[$g,temperature=$t]',"
  done
done
python -m tcts_jax.evaluate --config=configs/shapes.py:eval --workdir=workdirs/shapes/self_guidance_tradeoff \
  --config.eval.split=validation --config.eval.num_images=200 --config.eval.batch_size=100 --config.eval.shard_size=100 \
  --config.eval.refinement.base= --config.eval.compare="()" --config.eval.grid="($grid)"
cp workdirs/shapes/self_guidance_tradeoff/results.json workdirs/shapes/self_guidance_tradeoff/results.md results/self_guidance/tradeoff/
python results/self_guidance/tradeoff/plot.py
