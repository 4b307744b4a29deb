"""The generator's training corruption (docs/design.md §2.4), shared by generator and selector training."""

import jax
import jax.numpy as jnp

from tcts_jax.sampling.schedules import mask_ratio
from tcts_jax.sampling.select import gumbel_top_k

# How the masked fraction of a row is drawn: 'cosine' (MaskGIT's schedule at a uniform time, the generator's)
# or 'uniform' (the fraction itself ~ U[0, 1], as the TCTS authors train their selector).
RATIO_DISTRIBUTIONS = ('cosine', 'uniform')


def corrupt(
  rng, tokens, *, mask_id: int, codebook_size: int, corrupt_prob: float, ratio=None, ratio_distribution: str = 'cosine'
):
  """Mask a random fraction of each row and replace a few visible tokens by uniform random ones.

  The masked fraction is cos(pi/2 * u) ('cosine') or u ('uniform'), u ~ U(0, 1) per row, at least one
  token, unless `ratio` (B,) is given. Returns (corrupted tokens, masked (B, N) bool, replaced (B, N) bool).
  """
  if ratio_distribution not in RATIO_DISTRIBUTIONS:
    raise ValueError(f'unknown ratio distribution {ratio_distribution!r}; expected one of {RATIO_DISTRIBUTIONS}')
  b, n = tokens.shape
  r_ratio, r_pos, r_rep, r_tok = jax.random.split(rng, 4)
  if ratio is None:
    u = jax.random.uniform(r_ratio, (b,))
    ratio = mask_ratio(u) if ratio_distribution == 'cosine' else u
  num_masked = jnp.clip(jnp.ceil(ratio * n), 1, n).astype(jnp.int32)
  masked = gumbel_top_k(r_pos, jnp.zeros((b, n)), num_masked)
  replaced = ~masked & (jax.random.uniform(r_rep, (b, n)) < corrupt_prob)
  random_tokens = jax.random.randint(r_tok, (b, n), 0, codebook_size)
  out = jnp.where(replaced, random_tokens, tokens)
  return jnp.where(masked, mask_id, out), masked, replaced


def substitute(rng, tokens, masked, samples, rate: float):
  """Self-guidance's error tokens (docs/design.md §15.2): replace round(rate * visible count) of each row's
  visible tokens (at least one where any is visible), at uniformly random positions, by `samples` (B, N) of
  the generator. Returns (tokens with the substitutions, substituted (B, N) bool)."""
  visible = ~masked
  num_visible = jnp.sum(visible, axis=-1)
  count = jnp.where(num_visible > 0, jnp.clip(jnp.round(rate * num_visible), 1, num_visible), 0).astype(jnp.int32)
  substituted = gumbel_top_k(rng, jnp.where(visible, 0.0, -jnp.inf), count)
  return jnp.where(substituted, samples, tokens), substituted
