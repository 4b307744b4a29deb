"""Evaluators: the metrics of the eval job, found by name (`config.eval.metrics`).

A name resolves to, in order: an evaluator of the dataset (`Dataset.evaluators`, e.g. 'alignment' for
captioned shapes), the module `tcts_jax.evaluation.evaluators.<name>`, or a dotted module path. The module's
`Evaluator` class is built with the `EvalContext`; it raises `Unavailable` (with the reason) when it cannot
run here, e.g. without its weights, and the job then reports the reason instead of a number.

An evaluator scores one row of images, image i made for held-out record `example[i]`:
  per_image(images, example) -> {key: (n,) float64}  values per image: bootstrap intervals, paired differences
  pool(values, idx) -> {key: statistic}              the row statistic from per-image values over images `idx`
                                                     (None: all images; an (R, n) index: R resamples)
  per_row(images, example) -> {key: float}           statistics of the whole set (FID, MID): no interval
`columns` lists (key, label, scale, digits, with_interval) for the tables, `compared` the per-image keys
whose paired differences the report shows, `description` a sentence for the report on what the numbers are.

Optional, for a generated row's repair rate (docs/design.md §6, §9):
  transitions(mid_images, images, example) -> {key: (n,) counts} or None
    per image, of the units the evaluator judges (e.g. a caption's objects): `wrong_mid` wrong in the
    sampler's midpoint prediction `mid_images`, `repaired` of those right in the final `images`, `right_mid`
    right at midpoint and `broken` of those wrong at the end. None (the default): not supported.
The job pools them with `transition_rates`: repaired = Σ repaired / Σ wrong_mid, broken = Σ broken / Σ right_mid.
"""

import dataclasses
import importlib.util
from typing import Optional

import numpy as np

from tcts_jax.utils.registry import import_module, import_object


class Unavailable(Exception):
  """An evaluator that cannot run here; the message says why (no number is reported)."""


@dataclasses.dataclass
class EvalContext:
  config: object  # the whole config: evaluators read their settings from config.eval
  dataset: object  # tcts_jax.data.Dataset
  held_out: object  # tcts_jax.data.HeldOut: the records the rows' images were made for


@dataclasses.dataclass(frozen=True)
class Column:
  key: str
  label: str
  scale: float = 1.0  # 100 shows fractions as percent
  digits: int = 2
  with_interval: bool = False


class Evaluator:
  """Base class: an evaluator computes nothing until it overrides a method."""

  name = ''
  columns: tuple = ()
  compared: tuple = ()
  description = ''

  def __init__(self, ctx: EvalContext):
    self.ctx = ctx

  def per_image(self, images, example) -> dict:
    del images, example
    return {}

  def pool(self, values: dict, idx: Optional[np.ndarray]) -> dict:
    """Means over the images `idx` (all of them when None)."""
    return {k: (v if idx is None else v[idx]).mean(-1) for k, v in values.items()}

  def per_row(self, images, example) -> dict:
    del images, example
    return {}

  def transitions(self, mid_images, images, example) -> Optional[dict]:
    """Per image counts TRANSITIONS between midpoint and final images (see the module docstring); None:
    this evaluator cannot tell."""
    del mid_images, images, example
    return None


TRANSITIONS = ('wrong_mid', 'repaired', 'right_mid', 'broken')


def transition_counts(mid_matched, end_matched) -> dict:
  """TRANSITIONS per image from per-image boolean arrays of the objects right at midpoint and at the end."""
  pairs = list(zip(mid_matched, end_matched))
  return {
    'wrong_mid': np.array([np.sum(~m) for m, _ in pairs], np.float64),
    'repaired': np.array([np.sum(~m & e) for m, e in pairs], np.float64),
    'right_mid': np.array([np.sum(m) for m, _ in pairs], np.float64),
    'broken': np.array([np.sum(m & ~e) for m, e in pairs], np.float64),
  }


def transition_rates(values: dict, idx: Optional[np.ndarray] = None) -> dict:
  """repair_rate = Σ repaired / Σ wrong_mid and break_rate = Σ broken / Σ right_mid over the images `idx`
  (all of them when None; an (R, n) index: R resamples); NaN where there is nothing to repair / break."""

  def ratio(num, den):
    a, b = ((values[k] if idx is None else values[k][idx]).sum(-1) for k in (num, den))
    return np.where(b > 0, a / np.maximum(b, 1), np.nan)

  return {'repair_rate': ratio('repaired', 'wrong_mid'), 'break_rate': ratio('broken', 'right_mid')}


def find(name: str, dataset) -> type:
  """The Evaluator class named `name` (see the module docstring)."""
  if name in dataset.evaluators:
    return import_object(dataset.evaluators[name], 'evaluator')
  if '.' not in name and importlib.util.find_spec(f'{__name__}.{name}') is None:
    raise ValueError(
      f'unknown metric {name!r} for dataset {dataset.name!r}: no evaluator module '
      f'{__name__}.{name}, and the dataset has only {sorted(dataset.evaluators) or "no own metrics"}'
    )
  return import_module(name, __name__, 'metric').Evaluator


def find_all(names, dataset) -> dict:
  """{name: Evaluator class} of `names`, checked before anything is loaded or generated."""
  names = list(names)
  if len(set(names)) != len(names):
    raise ValueError(f'duplicate eval.metrics entries: {names}')
  classes = {name: find(name, dataset) for name in names}
  keys = [c.key for cls in classes.values() for c in cls.columns]
  if len(set(keys)) != len(keys):
    raise ValueError(f'eval.metrics {names} report the same key twice: {keys}')
  return classes


def build(classes: dict, ctx: EvalContext, unavailable: dict) -> dict:
  """{name: evaluator} of those that can run here; each one that cannot goes into `unavailable` {name: why}."""
  evaluators = {}
  for name, cls in classes.items():
    try:
      evaluators[name] = cls(ctx)
    except Unavailable as e:
      unavailable[name] = str(e)
  return evaluators
