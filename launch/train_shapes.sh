#!/usr/bin/env bash
# Reproduces the shipped weights (weights/shapes) from scratch on one machine (CPU, GPU or TPU VM):
#   bash launch/train_shapes.sh [WORKDIR] [OUT] [VARIANT]     (defaults: workdirs/shapes, weights/shapes, none)
# VARIANT is appended to every stage's config, e.g. `copy` (configs/shapes.py RECIPES: the paper's regime):
#   bash launch/train_shapes.sh workdirs/shapes_copy weights/shapes_copy copy
# Each stage resumes from its latest checkpoint if rerun (a finished stage returns at once).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-workdirs/shapes}
OUT=${2:-weights/shapes}
V=${3:+,$3}
python -m tcts_jax.data.shapes_tfds --config=default
python -m tcts_jax.train --config="configs/shapes.py:tokenizer$V" --workdir="$W/tokenizer"
# Held-out check: how much of each scene survives encode -> decode (the ceiling of every sampler).
python -m tcts_jax.tokenizer_eval --tokenizer="$W/tokenizer" --num_images=1000
python -m tcts_jax.train --config="configs/shapes.py:generator$V" --workdir="$W/generator" \
    --config.tokenizer_checkpoint="$W/tokenizer"
# The selector trains on the frozen, exported generator.
python -m tcts_jax.export --config=configs/shapes.py --tokenizer="$W/tokenizer" --generator="$W/generator" \
    --out="$W/export"
python -m tcts_jax.train --config="configs/shapes.py:selector$V" --workdir="$W/selector" \
    --config.generator_checkpoint="$W/export"
# The FID-shapes feature network (independent of the text-to-image model).
python -m tcts_jax.train --config="configs/shapes.py:features$V" --workdir="$W/features"
python -m tcts_jax.export --config=configs/shapes.py --tokenizer="$W/tokenizer" --generator="$W/generator" \
    --selector="$W/selector" --features="$W/features" --out="$OUT"
