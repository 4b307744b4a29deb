#!/usr/bin/env bash
# Muse's super-resolution stage on captioned shapes at 64 px (docs/design.md §17), from scratch on the shipped base
# model (weights/shapes), then the comparison of results/super_res/. The committed run: 2026-12-06, 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=workdirs/shapes_x2
python -m tcts_jax.data.shapes_tfds --config=default_x2
python -m tcts_jax.train --config=configs/shapes.py:tokenizer,x2 --workdir=$W/tokenizer
python -m tcts_jax.train --config=configs/shapes.py:super_res --workdir=$W/super_res --config.tokenizer_checkpoint=$W/tokenizer
python -m tcts_jax.export --config=configs/shapes.py:super_res --tokenizer=$W/tokenizer --super_res=$W/super_res \
    --out=weights/shapes_x2
python results/super_res/compare.py --num_images=200
