"""Sampling strategies as keep-logit functions (docs/design.md §2 table).

A strategy sees what the step produced (`StepInputs`) and returns per-position keep logits: the log of
the weight with which each position is kept (+inf: always kept). `select.gumbel_top_k` turns them into
exactly k_t kept positions. Fixed strategies give +inf to every visible token, so they never change one;
revocable strategies may re-mask any token. A strategy may also change the distribution x̂ is drawn from
(`Strategy.token_logits`, Improved VQ-Diffusion's purity sharpening).

`STRATEGIES` maps each name to a factory of the sampler config; the sampler, tests, benchmarks and docs
read it. A strategy of your own needs no edit here: name its factory by dotted path,
`--config.sampler.strategy=my_package.my_module.my_strategy` (a function `cfg -> Strategy`).
"""

import dataclasses
import functools
import math
from typing import Callable, Optional

import flax.struct
import jax.numpy as jnp
import numpy as np

from tcts_jax.utils.registry import import_object

# The oracle's stand-in for a selector logit: -10 where x̂ is the reference token, +10 where it is not.
ORACLE_LOGIT = 10.0
# The authors' cross-attention FAS averages the first 13 of their generator's 19 blocks.
CROSS_ATTENTION_LAYER_FRACTION = 13 / 19
FAS_MAPS = ('self_attention', 'cross_attention')
REMDM_SCHEDULES = ('cap', 'rescale', 'loop')
# ReMDM's keep logit of a token it re-masks: below every masked position's 0 + Gumbel noise, so a re-masked
# position is decoded again in the same step only when the masked ones cannot fill k_t.
REMASKED_LOGIT = -1e4


@flax.struct.dataclass
class StepInputs:
  """What one step gives a strategy; every field is (B, N) unless said otherwise."""

  kept: jnp.ndarray  # bool: visible before this step
  logp: jnp.ndarray  # log-probability of x̂ (after the visible-token rule) under the distribution it was drawn from
  high_freq: jnp.ndarray  # bool: FAS self-attention split of this step (all True when unused)
  # Selector logit of x̂ (high = NOT real/text-aligned), after selector CFG; zeros when unused.
  selector_logits: Optional[jnp.ndarray] = None
  # Improved VQ-Diffusion's purity: max_j p(j) of the step's guided distribution, divided by its max over the
  # image (ones when unused).
  purity: Optional[jnp.ndarray] = None
  # The authors' cross-attention FAS map, normalised to [0, 1) per image (zeros when unused).
  cross_attention: Optional[jnp.ndarray] = None
  reference_match: Optional[jnp.ndarray] = None  # bool: x̂ equals the reference token (all False when unused)
  time: Optional[jnp.ndarray] = None  # scalar t/T, t = 0..T-1: the fraction of the steps done before this one
  # k_t / N: the fraction of the canvas the schedule keeps after this step (scalar, or (B,) per image).
  keep_fraction: Optional[jnp.ndarray] = None
  entropy: Optional[jnp.ndarray] = None  # entropy (nats) of the distribution x̂ was drawn from (zeros when unused)
  uniform: Optional[jnp.ndarray] = None  # U[0, 1) per position, fresh each step (zeros when unused)


@dataclasses.dataclass(frozen=True)
class Strategy:
  name: str
  revocable: bool
  keep_logits: Callable[[StepInputs], jnp.ndarray]
  # Gumbel noise scale of every step, from the (T,) progress p_t = (t + 1) / T of all steps; 1 everywhere
  # means exact weighted sampling.
  noise_scale: Callable[[np.ndarray], np.ndarray] = lambda p: np.ones_like(p)
  # What the sampler must compute for it (static): the selector score, the FAS self-attention split, the
  # authors' FAS cross-attention map, the purity, the reference tokens' match.
  needs_selector: bool = False
  needs_high_freq: bool = False
  needs_cross_attention: bool = False
  needs_purity: bool = False
  needs_reference: bool = False
  needs_entropy: bool = False
  needs_uniform: bool = False
  # Optional change of the distribution x̂ is drawn from: (logits (B, N, K), purity (B, N)) -> logits, at the
  # steps where `token_logits_at` (of the (T,) progress) is True. None: x̂ is drawn from the guided logits.
  token_logits: Optional[Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]] = None
  token_logits_at: Callable[[np.ndarray], np.ndarray] = lambda p: np.ones(np.shape(p), bool)
  # Optional count rule: (StepInputs, k_t of the schedule) -> tokens kept after the step, (B,) int32. None:
  # the schedule's k_t. The schedule still ends at N, so every token is decoded by the last step.
  keep_count: Optional[Callable[[StepInputs, jnp.ndarray], jnp.ndarray]] = None


def _always_keep_visible(inputs: StepInputs, logits):
  return jnp.where(inputs.kept, jnp.inf, logits)


def uniform() -> Strategy:
  return Strategy('uniform', False, lambda s: _always_keep_visible(s, jnp.zeros(s.kept.shape)))


def purity(noise: float = 1.0) -> Strategy:
  """MaskGIT confidence: keep the most probable sampled tokens, Gumbel noise annealed tau * (1 - t/T)."""
  return Strategy('purity', False, lambda s: _always_keep_visible(s, s.logp), lambda p: noise * (1.0 - p))


def ivqd_purity(weight: float = 2.0) -> Strategy:
  """Improved VQ-Diffusion's purity sampling (the paper's "purity" baseline; docs/design.md §2.2).

  New positions are drawn among the masked ones only, without replacement, with weights equal to the purity
  (exact weighted sampling: noise 1); x̂ is drawn from the guided logits scaled by (1 + weight * purity) per
  position, except at the last step (their last step draws without it).
  """
  return Strategy(
    'ivqd_purity',
    False,
    lambda s: _always_keep_visible(s, jnp.log(s.purity)),
    needs_purity=True,
    token_logits=lambda logits, purity: (1.0 + weight * purity)[..., None] * logits,
    token_logits_at=lambda p: np.asarray(p) < 1.0,
  )


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
  return dataclasses.replace(
    base,
    name='persistent' if base.name == 'random_revoke' else f'persistent[{base.name}]',
    keep_logits=lambda s: base.keep_logits(s) + jnp.where(s.kept, log_w, 0.0),
  )


def tcts(sharpness: float = 1.0, noise: float = 1.0) -> Strategy:
  """TCTS (paper §3.2): keep the tokens the selector finds aligned, keep logit = -sharpness * score.

  Revocable: a visible token the selector now doubts can be re-masked. The Gumbel noise is annealed
  noise * (1 - t/T) like purity, so early steps explore and late steps follow the selector.
  """
  return Strategy(
    'tcts', True, lambda s: -sharpness * s.selector_logits, lambda p: noise * (1.0 - p), needs_selector=True
  )


def oracle(sharpness: float = 1.0, noise: float = 1.0) -> Strategy:
  """`tcts` with a perfect selector: its logit is -10 where x̂ is the reference token and +10 where it is not.

  An upper bound on what any selector can gain (it needs the reference tokens of a real image per prompt).
  """
  return Strategy(
    'oracle',
    True,
    lambda s: -sharpness * jnp.where(s.reference_match, -ORACLE_LOGIT, ORACLE_LOGIT),
    lambda p: noise * (1.0 - p),
    needs_reference=True,
  )


def fas(base: Strategy, weight: float, fas_map: str = 'self_attention', cross_weight: float = 3.0) -> Strategy:
  """Frequency adaptive sampling over `base` (docs/design.md §3).

  'self_attention' (ours, after SAG): persistent weight only where kept AND low-frequency. 'cross_attention'
  (the authors' code): `cross_weight * (1 - t/T) * map` added to the keep logit of every position.
  """
  if fas_map == 'self_attention':
    log_w = float(np.log(weight))
    return dataclasses.replace(
      base,
      name=f'fas[{base.name}]',
      keep_logits=lambda s: base.keep_logits(s) + jnp.where(s.kept & ~s.high_freq, log_w, 0.0),
      needs_high_freq=True,
    )
  if fas_map == 'cross_attention':
    return dataclasses.replace(
      base,
      name=f'fas[{base.name}]',
      keep_logits=lambda s: base.keep_logits(s) + cross_weight * (1.0 - s.time) * s.cross_attention,
      needs_cross_attention=True,
    )
  raise ValueError(f'unknown fas_map {fas_map!r}; expected one of {FAS_MAPS}')


def radical_inverse(i: int, base: int) -> float:
  """The van der Corput radical inverse of `i`: its base-`base` digits mirrored behind the point."""
  x, scale = 0.0, 1.0 / base
  while i:
    i, digit = divmod(i, base)
    x += digit * scale
    scale /= base
  return x


@functools.lru_cache(maxsize=None)
def halton_order(grid: int) -> np.ndarray:
  """The positions (row-major) of a `grid` x `grid` canvas in 2-D Halton order: the Halton points i = 0, 1, ...
  (column from base 2, row from base 3) scaled to the grid, each cell at its first visit (Besnier et al. 2025)."""
  order, seen, i = [], set(), 0
  while len(order) < grid * grid:
    cell = int(radical_inverse(i, 3) * grid) * grid + int(radical_inverse(i, 2) * grid)
    if cell not in seen:
      seen.add(cell)
      order.append(cell)
    i += 1
  return np.array(order, np.int32)


def halton() -> Strategy:
  """Halton scheduling (Besnier et al., ICLR 2025): masked positions are decoded in a fixed low-discrepancy
  2-D order whatever the logits (keep logit = -rank in the order, no noise), so the visible set after step t
  is the first k_t positions of the order. Fixed: visible tokens never change."""

  def keep_logits(s):
    n = s.kept.shape[-1]
    grid = math.isqrt(n)
    if grid * grid != n:
      raise ValueError(f'halton needs a square token grid, got {n} tokens')
    rank = np.empty(n, np.float32)
    rank[halton_order(grid)] = np.arange(n)
    return _always_keep_visible(s, jnp.broadcast_to(-jnp.asarray(rank), s.kept.shape))

  return Strategy('halton', False, keep_logits, lambda p: np.zeros_like(p))


def remdm_sigma(visible_before, visible_after, schedule: str, eta: float):
  """ReMDM's re-masking probability of a visible token (Wang et al. 2025), from the visible fractions
  before (α_t) and after (α_s) the step: σ_max = min(1, (1 - α_s) / α_t) is the most that keeps the
  marginals; 'cap' uses min(eta, σ_max), 'rescale' eta * σ_max, 'loop' min(eta, σ_max) in the loop's steps
  (those that hold the visible count, α_s = α_t: `schedules.keep_counts(hold=...)`) and 0 elsewhere (plain MDM
  decoding before and after the loop). 0 when nothing is visible."""
  sigma_max = jnp.where(
    visible_before > 0, jnp.clip((1.0 - visible_after) / jnp.maximum(visible_before, 1e-9), 0.0, 1.0), 0.0
  )
  if schedule == 'cap':
    return jnp.minimum(eta, sigma_max)
  if schedule == 'rescale':
    return eta * sigma_max
  if schedule == 'loop':
    return jnp.where(visible_after <= visible_before, jnp.minimum(eta, sigma_max), 0.0)
  raise ValueError(f'unknown ReMDM schedule {schedule!r}; expected one of {REMDM_SCHEDULES}')


def remdm(schedule: str = 'cap', eta: float = 0.05) -> Strategy:
  """ReMDM remasking (Wang et al. 2025): each visible token is re-masked with probability σ_t
  (`remdm_sigma`); the schedule's k_t is then filled with the surviving tokens and masked positions drawn
  uniformly (MDM's unmasking). Surviving tokens keep their values. eta = 0 is `uniform`. With 'loop' the sampler
  holds k_t over the steps of `remdm_loop` (the loop re-masks and re-decodes at a constant visible count)."""
  if schedule not in REMDM_SCHEDULES:
    raise ValueError(f'unknown ReMDM schedule {schedule!r}; expected one of {REMDM_SCHEDULES}')

  def keep_logits(s):
    visible = jnp.mean(s.kept, axis=-1, keepdims=True)
    sigma = remdm_sigma(visible, jnp.reshape(s.keep_fraction, (-1, 1)), schedule, eta)
    remasked = s.kept & (s.uniform < sigma)
    return jnp.where(s.kept, jnp.where(remasked, REMASKED_LOGIT, jnp.inf), 0.0)

  return Strategy('remdm', True, keep_logits, needs_uniform=True)


def entropy_bounded(gamma: float = 1.0) -> Strategy:
  """The EB-sampler's adaptive count (Ben-Hamu et al. 2025): the masked positions sorted by the entropy H of
  their distribution, it decodes the longest prefix U with sum_U H - max_U H <= gamma (at least one token), so
  sure steps decode many tokens and unsure ones few; k varies per image and step. The schedule's last step
  decodes what is left; once everything is visible the remaining steps change nothing. Fixed."""

  def keep_count(s, k):
    n = s.kept.shape[-1]
    h = jnp.sort(jnp.where(s.kept, jnp.inf, s.entropy), axis=-1)
    before_last = jnp.cumsum(h, axis=-1) - h  # sum of the prefix without its last (largest) entry
    decoded = jnp.sum(jnp.isfinite(h) & (before_last <= gamma), axis=-1)
    visible = jnp.sum(s.kept, axis=-1)
    eb = jnp.minimum(visible + jnp.maximum(decoded, 1), n)
    return jnp.where(jnp.broadcast_to(k, visible.shape) >= n, n, eb).astype(jnp.int32)

  return Strategy(
    'entropy_bounded',
    False,
    lambda s: _always_keep_visible(s, -s.entropy),
    lambda p: np.zeros_like(p),
    needs_entropy=True,
    keep_count=keep_count,
  )


def _fas(cfg, base: Strategy) -> Strategy:
  return fas(base, cfg.persistent_weight, cfg.get('fas_map', 'self_attention'), cfg.get('fas_cross_weight', 3.0))


def _fas_base(cfg) -> Strategy:
  try:
    base = make_strategy(cfg.fas_base, cfg)
  except ValueError as e:
    raise ValueError(f'unknown FAS base strategy {cfg.fas_base!r}: {e}') from None
  if base.needs_high_freq or base.needs_cross_attention:
    raise ValueError(f'unknown FAS base strategy {cfg.fas_base!r}: FAS cannot be applied over itself')
  return base


def _tcts(cfg) -> Strategy:
  return tcts(cfg.get('tcts_sharpness', 1.0), cfg.get('tcts_noise', 1.0))


def _oracle(cfg) -> Strategy:
  return oracle(cfg.get('tcts_sharpness', 1.0), cfg.get('tcts_noise', 1.0))


# name -> factory(sampler config) -> Strategy.
STRATEGIES: dict[str, Callable[..., Strategy]] = {
  'uniform': lambda cfg: uniform(),
  'purity': lambda cfg: purity(cfg.purity_noise),
  'ivqd_purity': lambda cfg: ivqd_purity(cfg.get('ivqd_purity_weight', 2.0)),
  'confidence': lambda cfg: confidence(*cfg.get('confidence_noise', (2.0, 0.0))),
  'random_revoke': lambda cfg: random_revoke(),
  'persistent': lambda cfg: persistent(cfg.persistent_weight),
  'fas': lambda cfg: _fas(cfg, _fas_base(cfg)),
  'tcts': _tcts,
  # The paper's TCTS + FAS: FAS over TCTS, whatever fas_base says.
  'tcts_fas': lambda cfg: _fas(cfg, _tcts(cfg)),
  # Table 5's TCTS + persistent: the persistent weight on every kept position, over the selector.
  'tcts_persistent': lambda cfg: persistent(cfg.persistent_weight, _tcts(cfg)),
  # The oracle selector (reference tokens needed): exactly `tcts` / `tcts_fas` with a perfect selector.
  'oracle': _oracle,
  'oracle_fas': lambda cfg: _fas(cfg, _oracle(cfg)),
  # Later samplers (docs/design.md §2.2): a fixed low-discrepancy order, ReMDM remasking, EB's adaptive count.
  'halton': lambda cfg: halton(),
  'remdm': lambda cfg: remdm(cfg.get('remdm_schedule', 'cap'), cfg.get('remdm_eta', 0.05)),
  'entropy_bounded': lambda cfg: entropy_bounded(cfg.get('eb_gamma', 1.0)),
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
