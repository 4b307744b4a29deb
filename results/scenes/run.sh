#!/usr/bin/env bash
# The shape-scenes eval of results/scenes/ (2026-12-06, the 4800-step model), three passes over one workdir (a rerun
# skips finished shards, so each pass makes only the images the earlier ones have not):
#   1. every row of the paper's tables and refinement of uniform@16 on the first 300 test captions -> 300/;
#   2. the regime rows (uniform@4/8/16/50) and TCTS+FAS, uniform, RR and purity at 4 and 8 steps (TCTS+FAS and
#      uniform at 16) on 1000 -> 1000/, and the differences on the 700 captions pass 1 had not seen;
#   3. pass 1's rows and refinement on all 1000 test captions -> results.md (the paper's pairs of configs/shapes.py
#      PAPER_COMPARE among them, and more).
# WORKDIR (default workdirs/scenes/eval) holds the shards. On the 2-core CPU pass 1 took 51 min, pass 2 about 60
# (making all 1000 images of each row, before shards survived a larger num_images) and pass 3 about 110
# (sharing the CPU with other jobs).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORKDIR="${WORKDIR:-workdirs/scenes/eval}"
# Every row of the paper's tables: passes 1 and 3.
TABLES="('uniform@16','tcts_fas@16','uniform@50','purity@16','random_revoke@16','uniform@8','uniform@4',\
'oracle@16','tcts@16','oracle_fas@16','tcts_fas@8','purity@8','random_revoke@8','fas@16','persistent@16',\
'tcts_persistent@16','uniform@25','purity@25','random_revoke@25','tcts_fas@25','random_revoke@50')"
evaluate() {  # num_images grid [more flags]
  python -m tcts_jax.evaluate --config=configs/scenes.py:eval --workdir="$WORKDIR" --config.eval.num_images="$1" \
    --config.eval.batch_size=100 --config.eval.shard_size=100 --config.eval.grid="$2" "${@:3}"
}
evaluate 300 "$TABLES" \
  --config.eval.refinement.base=uniform@16
mkdir -p results/scenes/300
cp "$WORKDIR"/results.{md,json} "$WORKDIR"/tradeoff.png results/scenes/300/
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
evaluate 1000 "$TABLES" \
  --config.eval.refinement.base=uniform@16 \
  --config.eval.compare="(('uniform@8','uniform@50'),('uniform@16','uniform@50'),('uniform@25','uniform@50'),\
('purity@16','uniform@16'),('purity@25','uniform@25'),('random_revoke@16','uniform@16'),\
('random_revoke@25','uniform@25'),('tcts_fas@8','uniform@8'),('tcts_fas@16','uniform@16'),('tcts_fas@25','uniform@25'),\
('tcts_fas@16','purity@16'),('tcts_fas@25','purity@25'),('tcts_fas@8','random_revoke@8'),\
('tcts_fas@16','random_revoke@16'),('tcts_fas@25','random_revoke@25'),('tcts@16','random_revoke@16'),\
('fas@16','random_revoke@16'),('persistent@16','random_revoke@16'),('tcts_fas@16','tcts@16'),\
('tcts_fas@16','tcts_persistent@16'),('oracle@16','tcts@16'),('oracle_fas@16','tcts_fas@16'),\
('tcts_fas@16','uniform@50'),('fas@16','uniform@16'),('tcts_fas@16','random_revoke@50'),\
('random_revoke@50','random_revoke@16'),('uniform@16 + revision (selector)','uniform@16 + revision (random)'),\
('uniform@16 + masked (selector)','uniform@16 + masked (random)'),('uniform@16 + revision (selector)','uniform@16'))"
cp "$WORKDIR"/results.{md,json} "$WORKDIR"/tradeoff.png results/scenes/
