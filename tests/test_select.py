"""The selection primitive: exact counts, and the sampling distributions it promises."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.sampling.select import draw_categorical, gumbel_top_k, inverse_cdf, sample_categorical


def test_exactly_k_per_row_with_per_row_k_and_forced_keeps():
  logits = jnp.where(jnp.arange(10) < 3, jnp.inf, 0.0)[None].repeat(4, 0)
  k = jnp.array([3, 4, 7, 10])
  keep = gumbel_top_k(jax.random.key(0), logits, k)
  np.testing.assert_array_equal(keep.sum(-1), k)
  assert keep[:, :3].all()  # +inf positions are always kept


def test_k1_draws_proportional_to_weights():
  w = np.array([1.0, 2.0, 3.0, 4.0])
  n = 40000
  keep = gumbel_top_k(jax.random.key(1), jnp.broadcast_to(jnp.log(w), (n, 4)), 1)
  counts = np.asarray(keep.sum(0))
  expected = n * w / w.sum()
  chi2 = ((counts - expected) ** 2 / expected).sum()
  assert chi2 < 16.3  # chi-square, 3 dof, p = 0.001


def test_k2_inclusion_matches_sampling_without_replacement():
  # Exact inclusion probabilities of successive weighted draws without replacement.
  w = np.array([1.0, 2.0, 3.0, 4.0])
  incl = np.zeros(4)
  for i, j in itertools.permutations(range(4), 2):
    incl[[i, j]] += w[i] / w.sum() * w[j] / (w.sum() - w[i])
  n = 40000
  keep = gumbel_top_k(jax.random.key(2), jnp.broadcast_to(jnp.log(w), (n, 4)), 2)
  freq = np.asarray(keep.mean(0))
  assert (np.abs(freq - incl) < 4 * np.sqrt(incl * (1 - incl) / n)).all(), (freq, incl)


def test_zero_noise_is_deterministic_top_k():
  logits = jnp.array([[0.3, 2.0, -1.0, 1.0]])
  keep = gumbel_top_k(jax.random.key(3), logits, 2, noise_scale=0.0)
  np.testing.assert_array_equal(keep[0], [False, True, False, True])


def test_sample_categorical_matches_probabilities():
  p = np.array([0.1, 0.0, 0.6, 0.3])
  n = 60000
  draws = np.asarray(sample_categorical(jax.random.key(4), jnp.broadcast_to(jnp.log(p + 1e-38), (n, 4))))
  counts = np.bincount(draws, minlength=4)
  assert counts[1] == 0
  keep = p > 0
  expected = n * p[keep]
  assert (((counts[keep] - expected) ** 2 / expected).sum()) < 13.8  # 2 dof, p = 0.001
  truncated = sample_categorical(jax.random.key(5), jnp.array([[0.0, -jnp.inf, 0.0]] * 1000))
  assert not (truncated == 1).any()


def reference_inverse_cdf(logits, u):
  """The flat inverse CDF in float64: the index i with CDF(i - 1) <= u * total < CDF(i)."""
  p = np.exp(logits - logits.max(-1, keepdims=True))
  cdf = np.cumsum(p, -1)
  return np.sum(cdf <= u[:, None] * cdf[:, -1:], -1), cdf / cdf[:, -1:]


@pytest.mark.parametrize('k', [5, 37, 1024, 8192])
def test_two_level_inverse_cdf_is_the_flat_one(k):
  """Same index as a float64 flat inverse CDF for the same uniform, except where u lies within float rounding
  of a CDF boundary; and the log normaliser is logsumexp."""
  rng = np.random.default_rng(k)
  logits = rng.normal(0, 3, (256, k)).astype(np.float32)
  logits[rng.random((256, k)) < 0.3] = -np.inf  # truncated tokens, also whole blocks of them at k = 5, 37
  logits[:, rng.integers(k)] = 1.0  # every row keeps a token
  u = rng.random(256).astype(np.float32)
  index, log_normaliser = inverse_cdf(jnp.asarray(logits), jnp.asarray(u))
  expected, cdf = reference_inverse_cdf(logits.astype(np.float64), u.astype(np.float64))
  near_boundary = np.abs(cdf - u[:, None]).min(-1) < 1e-5
  assert (np.asarray(index) == expected)[~near_boundary].all()
  assert near_boundary.mean() < 0.05
  finite = np.where(np.isfinite(logits), logits, -np.inf).astype(np.float64)
  np.testing.assert_allclose(log_normaliser, np.log(np.exp(finite).sum(-1)), rtol=1e-5)


def test_zero_probability_tokens_are_never_drawn_even_at_the_ends_of_the_unit_interval():
  k = 37  # blocks of 8: tokens 0, 7, 8, 31, 32 and 36 sit at block edges
  logits = np.full((4, k), -np.inf, np.float32)
  logits[0, [3, 20]] = 0.0
  logits[1, 9:12] = [1.0, 2.0, 3.0]
  logits[2, 35] = 5.0
  logits[3, [1, 30, 33]] = [0.0, 40.0, 0.0]
  below_one = np.nextafter(np.float32(1), np.float32(0))
  for u in (0.0, below_one):
    index, _ = inverse_cdf(jnp.asarray(logits), jnp.full(4, u, jnp.float32))
    assert np.isfinite(logits[np.arange(4), np.asarray(index)]).all(), (u, index)
  first, _ = inverse_cdf(jnp.asarray(logits), jnp.zeros(4))
  last, _ = inverse_cdf(jnp.asarray(logits), jnp.full(4, below_one))
  np.testing.assert_array_equal(first, [3, 9, 35, 1])
  np.testing.assert_array_equal(last, [20, 11, 35, 30])  # token 33 holds a mass of e^-40 after 30


def test_draw_categorical_matches_probabilities_over_several_blocks():
  """Chi-square over 37 tokens in 5 blocks, with zero-probability ones (p = 0.001 threshold, fixed seed)."""
  p = np.random.default_rng(0).dirichlet(np.ones(37))
  p[[0, 8, 15, 36]] = 0.0
  p /= p.sum()
  n = 100_000
  draws, log_normaliser = draw_categorical(jax.random.key(6), jnp.broadcast_to(jnp.log(jnp.asarray(p)), (n, 37)))
  counts = np.bincount(np.asarray(draws), minlength=37)
  assert counts[p == 0].sum() == 0
  expected = n * p[p > 0]
  assert ((counts[p > 0] - expected) ** 2 / expected).sum() < 62.49  # chi-square 0.999 quantile, 32 dof
  np.testing.assert_allclose(log_normaliser, 0.0, atol=1e-5)
