#!/usr/bin/env bash
# The sweep of results/shapes_sweep/: steps x strategy x visible tokens (keep / redraw) on the shipped
# captioned-shapes model, on the VALIDATION split (200 captions). The committed run (2026-12-05):
#   STEPS="4 8 16" bash results/shapes_sweep/run.sh        (default STEPS: 4 8 16 32)
cd "$(dirname "$0")/../.."
grid=""
for t in ${STEPS:-4 8 16 32}; do
  for s in uniform purity random_revoke tcts_fas "random_revoke@$t[visible_tokens=redraw]" "tcts_fas@$t[visible_tokens=redraw]"; do
    case "$s" in *@*) e="$s";; *) e="$s@$t";; esac
    grid="$grid'$e',"
  done
done
compare=""
for t in ${STEPS:-4 8 16 32}; do
  compare="$compare('tcts_fas@$t','uniform@$t'),('tcts_fas@$t','purity@$t'),('tcts_fas@$t','random_revoke@$t'),"
  compare="$compare('tcts_fas@$t','tcts_fas@$t[visible_tokens=redraw]'),('random_revoke@$t','random_revoke@$t[visible_tokens=redraw]'),"
done
compare="($compare('uniform@4','uniform@16'),('purity@4','uniform@4'))"
python -m tcts_jax.evaluate --config=configs/shapes.py:eval --workdir=workdirs/shapes/sweep_validation \
  --config.eval.split=validation --config.eval.num_images=200 --config.eval.batch_size=100 --config.eval.shard_size=100 \
  --config.eval.refinement.base= --config.eval.compare="$compare" --config.eval.grid="($grid)"
