"""Sampling strategies as keep-logit functions (DESIGN §2 table).

A strategy sees what the step produced (`StepInputs`) and returns per-position keep logits: the log of
the weight with which each position is kept (+inf: always kept). `select.gumbel_top_k` turns them into
exactly k_t kept positions. Fixed strategies give +inf to every visible token, so they never change one;
revocable strategies may re-mask any token.
"""

import dataclasses
from typing import Callable

import flax.struct
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class StepInputs:
  kept: jnp.ndarray        # (B, N) bool: visible before this step
  logp: jnp.ndarray        # (B, N) log-probability of the freshly sampled token x̂
  high_freq: jnp.ndarray   # (B, N) bool: FAS high-frequency map of this step (all True when unused)


@dataclasses.dataclass(frozen=True)
class Strategy:
  name: str
  revocable: bool
  keep_logits: Callable[[StepInputs], jnp.ndarray]
  # Gumbel noise scale at progress p = (t + 1) / T; 1 everywhere means exact weighted sampling.
  noise_scale: Callable[[np.ndarray], np.ndarray] = lambda p: np.ones_like(p)


def _always_keep_visible(inputs: StepInputs, logits):
  return jnp.where(inputs.kept, jnp.inf, logits)


def uniform() -> Strategy:
  return Strategy('uniform', False, lambda s: _always_keep_visible(s, jnp.zeros(s.kept.shape)))


def purity(noise: float = 1.0) -> Strategy:
  """MaskGIT confidence: keep the most probable sampled tokens, Gumbel noise annealed tau * (1 - t/T)."""
  return Strategy('purity', False, lambda s: _always_keep_visible(s, s.logp), lambda p: noise * (1.0 - p))


def random_revoke() -> Strategy:
  return Strategy('random_revoke', True, lambda s: jnp.zeros(s.kept.shape))


def persistent(weight: float) -> Strategy:
  """Algorithm 1: previously kept positions are `weight` times as likely to be kept again."""
  log_w = float(np.log(weight))
  return Strategy(f'persistent', True, lambda s: jnp.where(s.kept, log_w, 0.0))


def fas(base: Strategy, weight: float) -> Strategy:
  """Frequency adaptive sampling: persistent weight only where kept AND low-frequency."""
  log_w = float(np.log(weight))
  return Strategy(f'fas[{base.name}]', base.revocable,
                  lambda s: base.keep_logits(s) + jnp.where(s.kept & ~s.high_freq, log_w, 0.0),
                  base.noise_scale)
