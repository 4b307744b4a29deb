"""The selection primitive: exact counts, and the sampling distributions it promises."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.sampling.select import gumbel_top_k, sample_categorical


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
