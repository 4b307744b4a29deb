#!/usr/bin/env bash
# The shape-scenes eval of results/scenes/ (2026-12-06, the 4800-step model), two passes over one workdir (a rerun
# skips finished shards, so the second pass reuses the first 300 images of its rows):
#   1. every row of the paper's tables and refinement of uniform@16 on the first 300 test captions -> results.md;
#   2. the regime rows (uniform@4/8/16/50) and TCTS+FAS, uniform, RR and purity at 4 and 8 steps (TCTS+FAS and
#      uniform at 16) on 1000 -> 1000/, and the differences on the 700 captions pass 1 had not seen.
# WORKDIR (default workdirs/scenes/eval) holds the shards. Pass 1 took 51 min on the 2-core CPU; pass 2 about 60
# (measured making all 1000 images of each row, before shards survived a larger num_images).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKDIR="${WORKDIR:-workdirs/scenes/eval}"
evaluate() {  # num_images grid [more flags]
  python -m tcts_jax.evaluate --config=configs/scenes.py:eval --workdir="$WORKDIR" --config.eval.num_images="$1" \
    --config.eval.batch_size=100 --config.eval.shard_size=100 --config.eval.grid="$2" "${@:3}"
}
evaluate 300 "('uniform@16','tcts_fas@16','uniform@50','purity@16','random_revoke@16','uniform@8','uniform@4',\
'oracle@16','tcts@16','oracle_fas@16','tcts_fas@8','purity@8','random_revoke@8','fas@16','persistent@16',\
'tcts_persistent@16','uniform@25','purity@25','random_revoke@25','tcts_fas@25','random_revoke@50')" \
  --config.eval.refinement.base=uniform@16
cp "$WORKDIR"/results.{md,json} "$WORKDIR"/tradeoff.png results/scenes/
evaluate 1000 "('uniform@8','tcts_fas@8','uniform@50','uniform@4','tcts_fas@4','random_revoke@8','purity@8',\
'uniform@16','tcts_fas@16','random_revoke@4','purity@4')" \
  --config.eval.refinement.base= \
  --config.eval.compare="(('uniform@4','uniform@50'),('uniform@8','uniform@50'),('uniform@16','uniform@50'),\
('tcts_fas@4','uniform@4'),('tcts_fas@8','uniform@8'),('tcts_fas@16','uniform@16'),('tcts_fas@4','random_revoke@4'),\
('tcts_fas@8','random_revoke@8'),('tcts_fas@4','purity@4'),('tcts_fas@8','purity@8'),('purity@8','uniform@8'),\
('tcts_fas@8','uniform@50'),('tcts_fas@16','uniform@50'),('random_revoke@4','uniform@4'),\
('random_revoke@8','uniform@8'),('purity@4','uniform@4'))"
mkdir -p results/scenes/1000
cp "$WORKDIR"/results.{md,json} "$WORKDIR"/tradeoff.png results/scenes/1000/
python results/scenes/fresh_captions.py "$WORKDIR" > results/scenes/1000/fresh_captions.md
