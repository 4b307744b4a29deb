#!/usr/bin/env bash
# Step 1 of results/scenes_temperature (2026-12-06): choose the sampling temperature and guidance for shape scenes on
# 300 VALIDATION captions (disjoint from the test captions every table reports). uniform@16 at token temperature
# 0.5 / 0.75 / 1 with CFG 4 (the config's) and without guidance; the same captions and seeds in every row. Chosen:
# the setting with the highest object accuracy. ~10 min on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKDIR="${WORKDIR:-workdirs/scenes/temperature_validation}"
grid=""
for t in 0.5 0.75 1.0; do
  for g in 0.0 4.0; do
    grid="$grid'uniform@16[guidance_scale=$g,temperature=$t]',"
  done
done
python -m tcts_jax.evaluate --config=configs/scenes.py:eval --workdir="$WORKDIR" --config.eval.split=validation \
  --config.eval.num_images=300 --config.eval.batch_size=100 --config.eval.shard_size=100 \
  --config.eval.refinement.base= --config.eval.compare="()" --config.eval.grid="($grid)"
cp "$WORKDIR"/results.{md,json} results/scenes_temperature/validation/
