#!/usr/bin/env bash
# Self-guidance and the newer strategies (Halton, ReMDM cap and loop, EB-sampler) on the shipped captioned-shapes
# model (weights/shapes, with the adapter self_guidance.safetensors trained by configs/shapes.py:self_guidance), on
# the VALIDATION split (200 captions), 16 steps, the same captions and seeds in every row. Committed run: 2026-12-06.
cd "$(dirname "$0")/../.."
grid="'uniform@16','uniform@16[self_guidance_scale=0.5]','uniform@16[self_guidance_scale=1.0]','uniform@16[self_guidance_scale=2.0]',"
grid="$grid'uniform@16[guidance_scale=0.0]','uniform@16[guidance_scale=0.0,self_guidance_scale=1.0]',"
grid="$grid'uniform@16[self_guidance_scale=1.0,temperature=1.5]','uniform@16[temperature=1.5]',"
grid="$grid'purity@16','purity@16[self_guidance_scale=1.0]','tcts_fas@16','tcts_fas@16[self_guidance_scale=1.0]',"
grid="$grid'halton@16','remdm@16','remdm@16[remdm_schedule=loop]','entropy_bounded@16'"
compare="('uniform@16[self_guidance_scale=0.5]','uniform@16'),('uniform@16[self_guidance_scale=1.0]','uniform@16'),"
compare="$compare('uniform@16[self_guidance_scale=2.0]','uniform@16'),"
compare="$compare('uniform@16[guidance_scale=0.0,self_guidance_scale=1.0]','uniform@16[guidance_scale=0.0]'),"
compare="$compare('uniform@16[guidance_scale=0.0,self_guidance_scale=1.0]','uniform@16'),"
compare="$compare('uniform@16[self_guidance_scale=1.0,temperature=1.5]','uniform@16[temperature=1.5]'),"
compare="$compare('purity@16[self_guidance_scale=1.0]','purity@16'),('tcts_fas@16[self_guidance_scale=1.0]','tcts_fas@16'),"
compare="$compare('halton@16','uniform@16'),('remdm@16','uniform@16'),('remdm@16[remdm_schedule=loop]','uniform@16'),('entropy_bounded@16','uniform@16'),('entropy_bounded@16','purity@16')"
python -m tcts_jax.evaluate --config=configs/shapes.py:eval --workdir=workdirs/shapes/self_guidance_validation \
  --config.eval.split=validation --config.eval.num_images=200 --config.eval.batch_size=100 --config.eval.shard_size=100 \
  --config.eval.refinement.base= --config.eval.compare="($compare)" --config.eval.grid="($grid)"
