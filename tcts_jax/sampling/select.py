"""The one selection primitive every strategy goes through (docs/design.md §2).

Keeping k positions without replacement with probabilities proportional to w_i is exactly keeping the k
largest `log w_i + g_i`, g_i ~ Gumbel(0, 1) (Gumbel-top-k). Strategies only supply the keep logits
`log w_i` (+inf = always keep) and a noise scale; `k` may be a traced value because the choice is a
rank comparison, not a `top_k` with a static size.
"""

import jax
import jax.numpy as jnp


def ranks(scores):
  """0-based descending rank of each entry along the last axis (ties broken by position)."""
  order = jnp.argsort(-scores, axis=-1, stable=True)
  return jnp.argsort(order, axis=-1, stable=True)


def gumbel_top_k(rng, keep_logits, k, noise_scale=1.0):
  """Boolean mask with exactly `k` True per row: the k largest `keep_logits + noise_scale * Gumbel`.

  `k` is a scalar or a (B,) array (per row); `noise_scale` a scalar. With noise_scale 1 this samples
  k positions without replacement with probabilities proportional to exp(keep_logits).
  """
  noise = jax.random.gumbel(rng, keep_logits.shape, keep_logits.dtype)
  scores = jnp.where(jnp.isposinf(keep_logits), jnp.inf, keep_logits + noise_scale * noise)
  k = jnp.asarray(k)
  return ranks(scores) < (k[..., None] if k.ndim else k)


def sample_categorical(rng, logits):
  """One draw per row of `logits` (..., K) by inverse CDF: one uniform per row instead of K Gumbels.

  Same distribution as `jax.random.categorical`, but the random-number cost no longer scales with the
  codebook size, which keeps the sampler's per-step overhead small next to the generator forward.
  """
  probs = jax.nn.softmax(logits, axis=-1)
  cdf = jnp.cumsum(probs, axis=-1)
  u = jax.random.uniform(rng, logits.shape[:-1] + (1,), cdf.dtype) * cdf[..., -1:]
  # Count of CDF entries below u = the sampled index; clip guards u == total in float round-off.
  return jnp.minimum(jnp.sum(cdf < u, axis=-1), logits.shape[-1] - 1).astype(jnp.int32)
