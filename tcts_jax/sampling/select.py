"""The one selection primitive every strategy goes through (docs/design.md §2).

Keeping k positions without replacement with probabilities proportional to w_i is exactly keeping the k
largest `log w_i + g_i`, g_i ~ Gumbel(0, 1) (Gumbel-top-k). Strategies only supply the keep logits
`log w_i` (+inf = always keep) and a noise scale; `k` may be a traced value because the choice is a
rank comparison, not a `top_k` with a static size.
"""

import math

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
  """One draw per row of `logits` (..., K): `draw_categorical`'s index alone."""
  return draw_categorical(rng, logits)[0]


def draw_categorical(rng, logits):
  """One draw per row of `logits` (..., K) by inverse CDF, one uniform per row, and the row's log normaliser
  logsumexp(logits) (...,) (so log p(x) = logits[x] - log normaliser needs no second softmax).

  Same distribution as `jax.random.categorical`, but the random-number cost does not scale with the codebook
  size, and the full-vocabulary work is a max and a sum of exps (`inverse_cdf`)."""
  u = jax.random.uniform(rng, logits.shape[:-1] + (1,), jnp.float32)[..., 0]
  return inverse_cdf(logits, u)


def _block_size(k: int) -> int:
  """A power of two near sqrt(k): both levels of `inverse_cdf` then scan ~sqrt(k) entries."""
  return 1 << max(0, math.ceil(math.log2(math.sqrt(k))))


def _last_positive(values):
  """Index of the last entry > 0 along the last axis (0 if none)."""
  return jnp.max(jnp.where(values > 0, jnp.arange(values.shape[-1]), 0), axis=-1)


def _read_once(blocked_logits):
  """`blocked_logits`, materialised once on CPU for the max and the block sums to read.

  XLA:CPU runs both reductions as library kernels that take a materialised input, and otherwise writes the
  logits (with the temperature and whatever else produced them) out twice, once per reduction's shape (the
  head and draw of 4 × 256 tokens at 8192 codes: 40 ms, 33 ms with the barrier). Elsewhere the reductions fuse
  their producers and the barrier would only add a write.
  """
  return jax.lax.platform_dependent(blocked_logits, cpu=jax.lax.optimization_barrier, default=lambda x: x)


def inverse_cdf(logits, u):
  """The index i of softmax(`logits`) (..., K) with CDF(i - 1) <= u * total < CDF(i) for u (...,) in [0, 1),
  and logsumexp(logits) (...,); computed in float32.

  Two levels (docs/design.md §2.1): the vocabulary is cut into blocks of ~sqrt(K) tokens; a cumulative sum over
  the block masses picks the block, one over the chosen block's ~sqrt(K) masses the token. Only the max and the
  block sums read all K logits (a flat inverse CDF adds a softmax, a cumulative sum and a comparison over K). A
  token of probability 0 is never drawn, also when float rounding puts u * total at or past the last boundary.
  """
  logits = logits.astype(jnp.float32)
  k = logits.shape[-1]
  size = _block_size(k)
  blocks = -(-k // size)
  if blocks * size != k:
    logits = jnp.pad(logits, [(0, 0)] * (logits.ndim - 1) + [(0, blocks * size - k)], constant_values=-jnp.inf)
  blocked = _read_once(logits.reshape(logits.shape[:-1] + (blocks, size)))
  top = jnp.max(blocked, axis=(-2, -1))[..., None]
  # The masses are summed per block and not kept: the chosen block's are recomputed from its logits, so the
  # full-vocabulary work is two reads (max, exp-and-sum) and no masses written.
  block_mass = jnp.sum(jnp.exp(blocked - top[..., None]), axis=-1)  # (..., blocks)
  block_cdf = jnp.cumsum(block_mass, axis=-1)
  total = block_cdf[..., -1]
  target = u * total
  block = jnp.minimum(jnp.sum(block_cdf <= target[..., None], axis=-1), _last_positive(block_mass))
  # The mass of the blocks before the chosen one, as the block choice compared it (so target - before >= 0).
  before_cdf = jnp.concatenate([jnp.zeros_like(block_cdf[..., :1]), block_cdf[..., :-1]], axis=-1)
  before = jnp.take_along_axis(before_cdf, block[..., None], axis=-1)[..., 0]
  inside = jnp.exp(jnp.take_along_axis(blocked, block[..., None, None], axis=-2)[..., 0, :] - top)  # (..., size)
  offset = jnp.sum(jnp.cumsum(inside, axis=-1) <= (target - before)[..., None], axis=-1)
  index = block * size + jnp.minimum(offset, _last_positive(inside))
  return index.astype(jnp.int32), top[..., 0] + jnp.log(total)
