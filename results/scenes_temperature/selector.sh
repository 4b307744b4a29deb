#!/usr/bin/env bash
# Step 3 of results/scenes_temperature (2026-12-06): is the selector held back by being trained on other draws? The
# shipped selector learned from the config's draw (CFG 4, temperature 1, top-p 0.86); the setting chosen on
# validation samples with no guidance at temperature 0.5. This retrains the selector, with the config's recipe and
# nothing else changed, on draws of that setting (the selector's draw follows the sampler's settings,
# configs/shapes.py SELECTOR_DRAW), scores both selectors on held-out draws of that setting (selector_eval: AUROC),
# and runs the selector's rows with it on the same 1000 TEST captions as run.sh, with uniform and random revoke
# beside them for paired differences; then both selectors' rows against each other (selectors.py: RUN_WORKDIR is
# run.sh's WORKDIR). Nothing is chosen here: the setting came from validation.sh. ~30 min on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
W="${WORKDIR:-workdirs/scenes/selector_t05}"
SETTING=(--config.sampler.guidance_scale=0.0 --config.sampler.temperature=0.5)
python -m tcts_jax.train --config=configs/scenes.py:selector --workdir="$W/selector" \
  --config.generator_checkpoint=weights/scenes "${SETTING[@]}"
python -m tcts_jax.export --config=configs/scenes.py --tokenizer=weights/scenes --generator=weights/scenes \
  --selector="$W/selector" --features=weights/scenes --out="$W/weights"
for selector in weights/scenes "$W/weights"; do
  python -m tcts_jax.selector_eval --config=configs/scenes.py:selector --config.generator_checkpoint=weights/scenes \
    --selector="$selector" "${SETTING[@]}" > "$W/auroc_$(basename "$selector").json"
done
S='[guidance_scale=0.0,temperature=0.5]'
grid=""
for row in uniform@4 uniform@8 random_revoke@4 random_revoke@8 tcts@4 tcts@8 tcts_fas@4 tcts_fas@8; do
  grid="$grid'$row$S',"
done
pairs=""
for a_b in tcts_fas@4:uniform@4 tcts_fas@8:uniform@8 tcts_fas@4:random_revoke@4 tcts_fas@8:random_revoke@8 \
  tcts@4:random_revoke@4 tcts@8:random_revoke@8 tcts_fas@8:tcts@8; do
  pairs="$pairs('${a_b%%:*}$S','${a_b##*:}$S'),"
done
python -m tcts_jax.evaluate --config=configs/scenes.py:eval --config.weights="$W/weights" --workdir="$W/eval" \
  --config.eval.num_images=1000 --config.eval.batch_size=100 --config.eval.shard_size=100 \
  --config.eval.refinement.base= --config.eval.compare="($pairs)" --config.eval.grid="($grid)"
mkdir -p results/scenes_temperature/selector
cp "$W"/eval/results.{md,json} results/scenes_temperature/selector/
cp "$W/auroc_scenes.json" results/scenes_temperature/selector/auroc_shipped_selector.json
cp "$W/auroc_weights.json" results/scenes_temperature/selector/auroc_retrained_selector.json
python results/scenes_temperature/selectors.py "${RUN_WORKDIR:-workdirs/scenes/temperature}" "$W/eval" \
  > results/scenes_temperature/selector/selectors.md
