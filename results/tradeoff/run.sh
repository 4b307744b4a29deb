#!/usr/bin/env bash
# The paper's Fig. 1 on both benchmarks: persistent sampling at 16 steps with its weight swept from 1 (= random
# revoke) to large (-> uniform), the step-wise mixes U2R / R2U, and TCTS+FAS / TCTS+persistent for reference; the
# same 1000 TEST captions and seeds in every row. Then plot.py.
#   bash results/tradeoff/run.sh [shapes] [scenes]    # default: both; plot.py reads both benchmarks' json
# SHAPES_WORKDIR / SCENES_WORKDIR hold the shards (a rerun skips finished shards; the scenes workdir may be the
# one of results/scenes/run.sh, whose rows it shares).
set -euo pipefail
cd "$(dirname "$0")/../.."
grid="'uniform@16','random_revoke@16',"
for w in 3.0 30.0 100.0 1000.0; do grid="$grid'persistent@16[persistent_weight=$w]',"; done
grid="$grid'persistent@16','u2r@16','r2u@16','tcts_fas@16','tcts_persistent@16'"
run() {  # config workdir num_images name
  python -m tcts_jax.evaluate --config="$1" --workdir="$2" --config.eval.num_images="$3" \
    --config.eval.batch_size=100 --config.eval.shard_size=100 --config.eval.refinement.base= \
    --config.eval.compare="(('uniform@16','random_revoke@16'),('persistent@16','random_revoke@16'),\
('uniform@16','persistent@16[persistent_weight=1000.0]'),('u2r@16','r2u@16'),('tcts_persistent@16','uniform@16'))" \
    --config.eval.grid="($grid)"
  cp "$2/results.json" "results/tradeoff/$4.json"
  cp "$2/results.md" "results/tradeoff/$4.md"
}
benchmarks=("$@")
(($#)) || benchmarks=(shapes scenes)
for benchmark in "${benchmarks[@]}"; do
  case "$benchmark" in
    shapes) run configs/shapes.py:eval "${SHAPES_WORKDIR:-workdirs/shapes/tradeoff}" 1000 shapes ;;
    scenes) run configs/scenes.py:eval "${SCENES_WORKDIR:-workdirs/scenes/eval}" 1000 scenes ;;
    *) echo "run.sh: unknown benchmark '$benchmark' (expected shapes or scenes)" >&2; exit 2 ;;
  esac
done
python results/tradeoff/plot.py
