#!/usr/bin/env bash
# The pictures of results/high_resolution/ (2026-12-06): the shipped captioned-shapes model (8 x 8 tokens, 32 px)
# at its own size and on a 16 x 16 canvas (64 px) in both forms of docs/design.md §16; same prompts and seeds.
cd "$(dirname "$0")/../.."
out=results/high_resolution
prompts=(--prompt="a large red circle in the middle" --prompt="a small blue square at the top left and a big green triangle at the bottom")
common=(--num_samples=4 --seed=0 --config.sampler.strategy=purity --config.sampler.steps=16)
python -m tcts_jax.sample "${prompts[@]}" "${common[@]}" --out=$out/trained_grid_8.png
python -m tcts_jax.sample "${prompts[@]}" "${common[@]}" --grid=16 --high_res=windows --out=$out/windows_16.png
python -m tcts_jax.sample "${prompts[@]}" "${common[@]}" --grid=16 --high_res=upsample --out=$out/upsample_refine_16.png
