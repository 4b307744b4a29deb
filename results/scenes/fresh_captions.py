"""Paired differences on the captions added in pass 2 of run.sh only (test images 300-999).

Pass 2's rows and its 1000 captions were chosen after reading pass 1 (images 0-299): these 700 images are the
part of the 1000-caption result that could not have steered that choice. Prints a markdown table of object
accuracy, A - B with the eval job's paired bootstrap, on images 300-999 and on all 1000.

  python results/scenes/fresh_captions.py WORKDIR   # WORKDIR of run.sh, after pass 2
"""

import sys
from pathlib import Path

import numpy as np

from tcts_jax.data import scenes_alignment
from tcts_jax.evaluation import stats

PAIRS = (
  ('uniform@4', 'uniform@50'),
  ('uniform@8', 'uniform@50'),
  ('uniform@16', 'uniform@50'),
  ('tcts_fas@4', 'uniform@4'),
  ('tcts_fas@8', 'uniform@8'),
  ('tcts_fas@16', 'uniform@16'),
  ('tcts_fas@4', 'random_revoke@4'),
  ('tcts_fas@8', 'random_revoke@8'),
  ('tcts_fas@4', 'purity@4'),
  ('tcts_fas@8', 'purity@8'),
  ('random_revoke@4', 'uniform@4'),  # these last three were added after reading pass 2's table
  ('random_revoke@8', 'uniform@8'),
  ('purity@8', 'uniform@8'),
)
FIRST_PASS = 300


def alignment(workdir: Path, row: str) -> dict:
  with np.load(workdir / 'per_image' / f'{row}.npz') as z:
    return {k.removeprefix('alignment/'): z[k] for k in z.files if k.startswith('alignment/')}


def difference(a: dict, b: dict, images: slice) -> str:
  d = stats.paired_difference(
    scenes_alignment.pool, {k: v[images] for k, v in a.items()}, {k: v[images] for k, v in b.items()}, 1000, 0
  )['object_accuracy']
  low, high = d['ci95']
  return f'{100 * d["value"]:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]'


def main(workdir: Path) -> None:
  print('| A | B | object acc., images 300-999 | all 1000 |\n|---|---|---|---|')
  for a, b in PAIRS:
    missing = [r for r in (a, b) if not (workdir / 'per_image' / f'{r}.npz').exists()]
    ra, rb = (None, None) if missing else (alignment(workdir, a), alignment(workdir, b))
    if missing or len(ra['objects']) != 1000 or len(rb['objects']) != 1000:
      print(f'skipped {a} - {b}: {missing or "not 1000 images"}', file=sys.stderr)
      continue
    print(f'| {a} | {b} | {difference(ra, rb, slice(FIRST_PASS, None))} | {difference(ra, rb, slice(None))} |')


if __name__ == '__main__':
  main(Path(sys.argv[1]))
