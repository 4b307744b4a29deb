#!/usr/bin/env bash
# Step 2 of results/scenes_temperature (2026-12-06): the setting chosen on validation (validation.sh: the highest
# object accuracy of uniform@16, 300 validation captions: no guidance, token temperature 0.5) on 1000 TEST captions:
# the regime rows (uniform at 4 / 8 / 16 / 50 steps) and uniform, purity, random revoke and TCTS+FAS at 4 and 8 steps.
# Nothing else was tried on the test captions. ~40 min on the 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKDIR="${WORKDIR:-workdirs/scenes/temperature}"
S='[guidance_scale=0.0,temperature=0.5]'
grid=""
for row in uniform@4 uniform@8 uniform@16 uniform@50 purity@4 purity@8 random_revoke@4 random_revoke@8 tcts_fas@4 \
  tcts_fas@8; do
  grid="$grid'$row$S',"
done
pairs=""
for a_b in uniform@4:uniform@50 uniform@8:uniform@50 uniform@16:uniform@50 random_revoke@4:uniform@4 \
  random_revoke@8:uniform@8 purity@4:uniform@4 purity@8:uniform@8 tcts_fas@4:uniform@4 tcts_fas@8:uniform@8 \
  tcts_fas@4:random_revoke@4 tcts_fas@8:random_revoke@8 tcts_fas@4:purity@4 tcts_fas@8:purity@8; do
  pairs="$pairs('${a_b%%:*}$S','${a_b##*:}$S'),"
done
python -m tcts_jax.evaluate --config=configs/scenes.py:eval --workdir="$WORKDIR" --config.eval.num_images=1000 \
  --config.eval.batch_size=100 --config.eval.shard_size=100 --config.eval.refinement.base= \
  --config.eval.compare="($pairs)" --config.eval.grid="($grid)"
cp "$WORKDIR"/results.{md,json} "$WORKDIR"/tradeoff.png results/scenes_temperature/
