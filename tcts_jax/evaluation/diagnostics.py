"""A generated row's sampling diagnostics, summarised for results.json (docs/design.md §6).

The sampler (diagnostics=True, docs/design.md §2.3) gives per image and step: `decided` (tokens newly
kept), `revoked` (visible tokens re-masked), `churn` (fraction of the visible tokens still kept whose value
changed), `entropy_masked` / `entropy_visible` (mean entropy in nats of the step's draw at masked / visible
positions). A row reports their per-step means over images and a few per-row numbers. A step where an
image has no visible token (the first one) or none that stayed kept says nothing about its churn or visible
entropy, so such image-steps are left out of those means: the number of visible tokens entering step t is
the sum over earlier steps of decided - revoked (the job samples from an all-[MASK] canvas).

Repair and break rates (the evaluators' optional `transitions` hook, evaluators/__init__.py) compare the
midpoint prediction with the final image: repaired = Σ repaired / Σ wrong at midpoint, broken = Σ broken /
Σ right at midpoint, with bootstrap intervals over images.
"""

import numpy as np

from tcts_jax.evaluation import evaluators, stats


def _finite_or_none(x) -> object:
  return float(x) if np.isfinite(x) else None


def _mean_where(values: np.ndarray, where: np.ndarray) -> np.ndarray:
  """Per column (step) mean of `values` (n, T) over the images where `where`; NaN where no image counts."""
  count = where.sum(0)
  return np.where(count > 0, np.where(where, values, 0.0).sum(0) / np.maximum(count, 1), np.nan)


def summarise(per_image: dict) -> dict:
  """{'per_step': {name: [T means over images]}, 'summary': {...}} of a row's per-image (n, T) diagnostics."""
  d = {k: np.asarray(v, np.float64) for k, v in per_image.items()}
  net = d['decided'] - d['revoked']
  visible = np.cumsum(net, axis=1) - net  # entering each step
  stayed = visible - d['revoked']
  everywhere = np.ones_like(visible, bool)
  where = {'churn': stayed > 0, 'entropy_visible': visible > 0}
  per_step = {k: _mean_where(v, where.get(k, everywhere)) for k, v in d.items()}
  changed = d['churn'] * stayed  # visible tokens that stayed kept with another value, per image and step

  def over_steps(x):
    return _finite_or_none(np.nanmean(x)) if np.isfinite(x).any() else None

  summary = {
    'decided_per_image': float(d['decided'].sum(1).mean()),
    'revoked_per_image': float(d['revoked'].sum(1).mean()),
    'changed_per_image': float(changed.sum(1).mean()),
    'churn': over_steps(per_step['churn']),
    'entropy_masked': over_steps(per_step['entropy_masked']),
    'entropy_visible': over_steps(per_step['entropy_visible']),
  }
  return {'per_step': {k: [_finite_or_none(x) for x in v] for k, v in per_step.items()}, 'summary': summary}


def transition_summary(values: dict, num_resamples: int, seed: int) -> dict:
  """{'repair_rate', 'break_rate': {'value', 'ci95'}, 'counts': totals} of a row's per-image transitions."""
  n = len(values['wrong_mid'])
  out = stats.bootstrap(lambda idx: evaluators.transition_rates(values, idx), n, num_resamples, seed)
  out['counts'] = {k: int(np.sum(values[k])) for k in evaluators.TRANSITIONS}
  return out
