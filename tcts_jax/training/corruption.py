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
