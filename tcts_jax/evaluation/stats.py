"""Bootstrap statistics over images: a row's interval, and the paired difference of two rows."""

import numpy as np


def bootstrap(statistic, n: int, num_resamples: int, seed: int) -> dict:
  """{key: {'value', 'ci95': [low, high]}} of `statistic(idx)` ({key: value}; idx None = all images, else a
  (R, n) index of resampled images): percentile bootstrap over images, resampled with replacement.

  A statistic may be undefined (NaN) on some images, e.g. a rate with nothing to count: its value is then
  None, and the resamples where it is undefined are left out of its interval."""
  out = {k: {'value': float(v) if np.isfinite(v) else None} for k, v in statistic(None).items()}
  if num_resamples > 0 and n > 1:
    resampled = statistic(np.random.default_rng(seed).integers(0, n, (num_resamples, n)))
    for k, v in resampled.items():
      v = np.asarray(v)[np.isfinite(v)]
      if out[k]['value'] is not None and len(v):
        out[k]['ci95'] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
  return out


def paired_difference(pool, a: dict, b: dict, num_resamples: int, seed: int) -> dict:
  """pool(A) - pool(B) of two rows' per-image values on the same images, resampling the images of both
  together. `pool(values, idx)` is the row statistic (an evaluator's `pool`).

  Rows share captions and seeds, so the spread between images partly cancels (the more alike the two
  rows' images, the more): this interval, not the overlap of the rows' own ones, answers "does A beat B".
  """
  if {k: np.shape(v) for k, v in a.items()} != {k: np.shape(v) for k, v in b.items()}:
    raise ValueError('paired rows must score the same images')
  n = len(next(iter(a.values())))

  def statistic(idx):
    pa, pb = pool(a, idx), pool(b, idx)
    return {k: pa[k] - pb[k] for k in pa}

  return bootstrap(statistic, n, num_resamples, seed)
