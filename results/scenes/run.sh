#!/usr/bin/env bash
# The shape-scenes eval of results/scenes/ (2026-12-06, the 4800-step model): 300 test captions, the rows in order
# of importance (a rerun skips finished shards). WORKDIR (default workdirs/scenes/eval) holds the shards.
cd "$(dirname "$0")/../.."
python -m tcts_jax.evaluate --config=configs/scenes.py:eval --workdir="${WORKDIR:-workdirs/scenes/eval}" \
  --config.eval.num_images="${NUM_IMAGES:-300}" --config.eval.batch_size=100 --config.eval.shard_size=100 \
  --config.eval.refinement.base= \
  --config.eval.grid="${GRID:-('uniform@16','tcts_fas@16','uniform@50','purity@16','random_revoke@16','uniform@8','oracle@16','tcts@16')}"
