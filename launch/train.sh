#!/usr/bin/env bash
# Trains every stage of a config's recipe from scratch on one machine (CPU, GPU or TPU VM) and exports them:
#   bash launch/train.sh CONFIG WORKDIR OUT [VARIANT]
# e.g. bash launch/train.sh configs/scenes.py workdirs/scenes weights/scenes
# VARIANT is appended to every stage's config (e.g. `copy`, configs/shapes.py RECIPES). The dataset is built on
# first use. Each stage resumes from its latest checkpoint if rerun (a finished stage returns at once); each
# prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
C=$1
W=$2
OUT=$3
V=${4:+,$4}
stage() { local start=$SECONDS; "$@"; echo "[launch] $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: ${*:3:2}"; }
stage python -m tcts_jax.train --config="$C:tokenizer$V" --workdir="$W/tokenizer"
# Held-out check: how much of each scene survives encode -> decode (the ceiling of every sampler).
stage python -m tcts_jax.tokenizer_eval --config="$C:tokenizer$V" --tokenizer="$W/tokenizer" --num_images=1000
stage python -m tcts_jax.train --config="$C:generator$V" --workdir="$W/generator" \
    --config.tokenizer_checkpoint="$W/tokenizer"
# The selector trains on the frozen, exported generator.
stage python -m tcts_jax.export --config="$C" --tokenizer="$W/tokenizer" --generator="$W/generator" --out="$W/export"
stage python -m tcts_jax.train --config="$C:selector$V" --workdir="$W/selector" \
    --config.generator_checkpoint="$W/export"
# The FID-shapes feature network (independent of the text-to-image model).
stage python -m tcts_jax.train --config="$C:features$V" --workdir="$W/features"
stage python -m tcts_jax.export --config="$C" --tokenizer="$W/tokenizer" --generator="$W/generator" \
    --selector="$W/selector" --features="$W/features" --out="$OUT"
