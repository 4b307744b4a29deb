"""Sampling strategies as keep-logit functions (docs/design.md §2 table).

A strategy sees what the step produced (`StepInputs`) and returns per-position keep logits: the log of
the weight with which each position is kept (+inf: always kept). `select.gumbel_top_k` turns them into
exactly k_t kept positions. Fixed strategies give +inf to every visible token, so they never change one;
revocable strategies may re-mask any token.

`STRATEGIES` maps each name to a factory of the sampler config; the sampler, tests, benchmarks and docs
read it. A strategy of your own needs no edit here: name its factory by dotted path,
`--config.sampler.strategy=my_package.my_module.my_strategy` (a function `cfg -> Strategy`).
"""

import dataclasses
from typing import Callable, Optional

import flax.struct
import jax.numpy as jnp
import numpy as np

from tcts_jax.utils.registry import import_object


@flax.struct.dataclass
class StepInputs:
  kept: jnp.ndarray  # (B, N) bool: visible before this step
  logp: jnp.ndarray  # (B, N) log-probability of the freshly sampled token x̂
  high_freq: jnp.ndarray  # (B, N) bool: FAS high-frequency map of this step (all True when unused)
  # (B, N) selector logit of x̂ (high = NOT real/text-aligned), after selector CFG; zeros when unused.
  selector_logits: Optional[jnp.ndarray] = None


@dataclasses.dataclass(frozen=True)
class Strategy:
  name: str
  revocable: bool
  keep_logits: Callable[[StepInputs], jnp.ndarray]
  # Gumbel noise scale of every step, from the (T,) progress p_t = (t + 1) / T of all steps; 1 everywhere
  # means exact weighted sampling.
  noise_scale: Callable[[np.ndarray], np.ndarray] = lambda p: np.ones_like(p)
  # What the sampler must compute for it (static): the selector score, the FAS frequency map.
  needs_selector: bool = False
  needs_high_freq: bool = False


def _always_keep_visible(inputs: StepInputs, logits):
  return jnp.where(inputs.kept, jnp.inf, logits)


def uniform() -> Strategy:
  return Strategy('uniform', False, lambda s: _always_keep_visible(s, jnp.zeros(s.kept.shape)))


def purity(noise: float = 1.0) -> Strategy:
  """MaskGIT confidence: keep the most probable sampled tokens, Gumbel noise annealed tau * (1 - t/T)."""
  return Strategy('purity', False, lambda s: _always_keep_visible(s, s.logp), lambda p: noise * (1.0 - p))


def confidence(noise_start: float = 2.0, noise_end: float = 0.0) -> Strategy:
  """aMUSEd's rule (diffusers `AmusedScheduler`): keep the most probable sampled tokens, Gumbel noise scaled
  linearly from `noise_start` at the first step to `noise_end` at the last (its `temperature=(2, 0)`)."""
  return Strategy(
    'confidence',
    False,
    lambda s: _always_keep_visible(s, s.logp),
    lambda p: np.linspace(noise_start, noise_end, len(p)),
  )


def random_revoke() -> Strategy:
  return Strategy('random_revoke', True, lambda s: jnp.zeros(s.kept.shape))


def persistent(weight: float, base: Optional[Strategy] = None) -> Strategy:
  """Algorithm 1: previously kept positions are `weight` times as likely to be kept again as under `base`
  (default random revoke, the paper's persistent sampling; TCTS + persistent with the selector)."""
  base = base or random_revoke()
  log_w = float(np.log(weight))
  name = 'persistent' if base.name == 'random_revoke' else f'persistent[{base.name}]'
  return Strategy(
    name,
    base.revocable,
    lambda s: base.keep_logits(s) + jnp.where(s.kept, log_w, 0.0),
    base.noise_scale,
    needs_selector=base.needs_selector,
    needs_high_freq=base.needs_high_freq,
  )


def tcts(sharpness: float = 1.0, noise: float = 1.0) -> Strategy:
  """TCTS (paper §3.2): keep the tokens the selector finds aligned, keep logit = -sharpness * score.

  Revocable: a visible token the selector now doubts can be re-masked. The Gumbel noise is annealed
  noise * (1 - t/T) like purity, so early steps explore and late steps follow the selector.
  """
  return Strategy(
    'tcts', True, lambda s: -sharpness * s.selector_logits, lambda p: noise * (1.0 - p), needs_selector=True
  )


def fas(base: Strategy, weight: float) -> Strategy:
  """Frequency adaptive sampling: persistent weight only where kept AND low-frequency."""
  log_w = float(np.log(weight))
  return Strategy(
    f'fas[{base.name}]',
    base.revocable,
    lambda s: base.keep_logits(s) + jnp.where(s.kept & ~s.high_freq, log_w, 0.0),
    base.noise_scale,
    needs_selector=base.needs_selector,
    needs_high_freq=True,
  )


def _fas_base(cfg) -> Strategy:
  try:
    base = make_strategy(cfg.fas_base, cfg)
  except ValueError as e:
    raise ValueError(f'unknown FAS base strategy {cfg.fas_base!r}: {e}') from None
  if base.needs_high_freq:
    raise ValueError(f'unknown FAS base strategy {cfg.fas_base!r}: FAS cannot be applied over itself')
  return base


def _tcts(cfg) -> Strategy:
  return tcts(cfg.get('tcts_sharpness', 1.0), cfg.get('tcts_noise', 1.0))


# name -> factory(sampler config) -> Strategy.
STRATEGIES: dict[str, Callable[..., Strategy]] = {
  'uniform': lambda cfg: uniform(),
  'purity': lambda cfg: purity(cfg.purity_noise),
  'confidence': lambda cfg: confidence(*cfg.get('confidence_noise', (2.0, 0.0))),
  'random_revoke': lambda cfg: random_revoke(),
  'persistent': lambda cfg: persistent(cfg.persistent_weight),
  'fas': lambda cfg: fas(_fas_base(cfg), cfg.persistent_weight),
  'tcts': _tcts,
  # The paper's TCTS + FAS: FAS over TCTS, whatever fas_base says.
  'tcts_fas': lambda cfg: fas(_tcts(cfg), cfg.persistent_weight),
  # Table 5's TCTS + persistent: the persistent weight on every kept position, over the selector.
  'tcts_persistent': lambda cfg: persistent(cfg.persistent_weight, _tcts(cfg)),
}
# Per-step switching (paper §4.5): the strategy of the first half of the steps, then of the second half.
PRESETS = {
  'u2r': ('uniform', 'random_revoke'),
  'r2u': ('random_revoke', 'uniform'),
}


def make_strategy(name: str, cfg) -> Strategy:
  """The strategy `name` (a key of STRATEGIES, or a dotted path to a factory) for sampler config `cfg`."""
  if name in STRATEGIES:
    return STRATEGIES[name](cfg)
  if '.' in name:
    strategy = import_object(name, 'strategy')(cfg)
    if not isinstance(strategy, Strategy):
      raise ValueError(f'strategy factory {name!r} returned {type(strategy).__name__}, not a Strategy')
    return strategy
  raise ValueError(
    f'unknown strategy {name!r}; expected one of {tuple(STRATEGIES) + tuple(PRESETS)} '
    'or a dotted path to a strategy factory'
  )
