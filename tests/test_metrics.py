"""FID / MID / CLIP-score maths against analytic values and independent float64 NumPy code."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from tcts_jax.metrics import clip_score, feature_statistics, fid_from_features, frechet_distance, mid


@pytest.fixture(autouse=True)
def _no_x64_leak():
  yield
  assert jnp.zeros(1).dtype == jnp.float32, 'a metric left jax_enable_x64 on'


# ------------------------------------------------------------------------------------------ FID
def test_fid_identical_sets_is_zero():
  f = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)
  assert abs(fid_from_features(f, f)) < 1e-6


def test_fid_identical_singular_sets_is_zero():
  f = np.random.default_rng(1).normal(size=(10, 32))  # N <= dim: singular covariance, still defined
  assert abs(fid_from_features(f, f)) < 1e-6


def test_fid_diagonal_analytic():
  rng = np.random.default_rng(2)
  mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
  a, b = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.0, 3.0, size=8)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(want, rel=1e-10, abs=1e-10)


def test_fid_matches_scipy_sqrtm_and_is_symmetric():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(200, 12))
  b = rng.normal(size=(150, 12)) @ rng.normal(size=(12, 12)) * 0.5 + 0.3
  s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  want = (
    np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
  )
  assert fid_from_features(a, b) == pytest.approx(want, rel=1e-9)
  assert fid_from_features(b, a) == pytest.approx(fid_from_features(a, b), rel=1e-9)


def test_feature_statistics():
  f = np.random.default_rng(4).normal(size=(50, 5)).astype(np.float32)
  mu, sigma = feature_statistics(f)
  assert mu.dtype == np.float64 and sigma.dtype == np.float64
  np.testing.assert_allclose(mu, f.astype(np.float64).mean(0), atol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(f.astype(np.float64), rowvar=False), atol=1e-12)


def test_fid_bad_inputs():
  rng = np.random.default_rng(5)
  with pytest.raises(ValueError, match='at least 2'):
    fid_from_features(rng.normal(size=(1, 4)), rng.normal(size=(5, 4)))
  with pytest.raises(ValueError, match='dims differ'):
    fid_from_features(rng.normal(size=(5, 4)), rng.normal(size=(5, 3)))
  with pytest.raises(ValueError, match='shape mismatch'):
    frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(ValueError, match=r'\(N, dim\)'):
    feature_statistics(np.zeros(5))


# ------------------------------------------------------------------------------------------ MID
def _mid_numpy(x, y, x0, eps=0.0):
  """Independent float64 NumPy MID/PMI (slogdet + solve), features L2-normalised first."""
  nrm = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
  x, y, x0 = nrm(x), nrm(y), nrm(x0)
  n = x.shape[0]
  z, z0 = np.hstack([x, y]), np.hstack([x0, y])
  mx, my, mz = x.mean(0), y.mean(0), z.mean(0)
  ridge = lambda a: a + eps * np.eye(a.shape[0])
  X, Y, Z = (ridge(np.cov(a, rowvar=False)) for a in (x, y, z))
  X0 = (x0 - mx).T @ (x0 - mx) / (n - 1)
  Z0 = (z0 - mz).T @ (z0 - mz) / (n - 1)
  ld = lambda a: np.linalg.slogdet(a)[1]
  mi = 0.5 * (ld(X) + ld(Y) - ld(Z))
  tr = lambda a, b: np.trace(np.linalg.solve(a, b))
  mid_v = mi + 0.5 * (tr(X, X0) + tr(Y, np.cov(y, rowvar=False)) - tr(Z, Z0))
  maha = lambda a, v: np.einsum('ij,ij->i', v, np.linalg.solve(a, v.T).T)
  pmi = mi + 0.5 * (maha(X, x0 - mx) + maha(Y, y - my) - maha(Z, z0 - mz))
  return mid_v, mi, pmi


def _features(n=200, d=6, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d))
  y = x @ rng.normal(size=(d, d)) * 0.7 + rng.normal(size=(n, d))  # correlated captions
  x0 = 0.8 * x + 0.6 * rng.normal(size=(n, d))  # imperfect generations
  return x.astype(np.float32), y.astype(np.float32), x0.astype(np.float32)


def test_mid_matches_numpy_reference():
  x, y, x0 = (a.astype(np.float64) for a in _features())
  got, pmi = mid(x, y, x0)
  want, _, want_pmi = _mid_numpy(x, y, x0)
  assert got == pytest.approx(want, rel=1e-9)
  np.testing.assert_allclose(pmi, want_pmi, rtol=1e-9, atol=1e-9)
  assert pmi.dtype == np.float64 and pmi.shape == (x.shape[0],)


def test_mid_with_eps_matches_numpy_reference():
  x, y, x0 = (a.astype(np.float64) for a in _features(n=20, d=12, seed=1))  # N <= dx + dy
  got, pmi = mid(x, y, x0, eps=5e-3)
  want, _, want_pmi = _mid_numpy(x, y, x0, eps=5e-3)
  assert got == pytest.approx(want, rel=1e-8)
  np.testing.assert_allclose(pmi, want_pmi, rtol=1e-8, atol=1e-8)


def test_mid_real_equals_mi_and_pmi_mean():
  x, y, x0 = _features(seed=2)
  n = x.shape[0]
  mid_real, _ = mid(x, y, x)
  _, mi, _ = _mid_numpy(*(a.astype(np.float64) for a in (x, y, x)))
  assert mid_real == pytest.approx(mi, rel=1e-9)
  m, pmi = mid(x, y, x0)
  assert pmi.mean() == pytest.approx(mi + (n - 1) / n * (m - mi), rel=1e-9)
  # aligned generations score higher than shuffled ones
  m_shuf, _ = mid(x, y, x0[np.random.default_rng(0).permutation(n)])
  assert m > m_shuf


def test_mid_bad_inputs():
  x, y, x0 = _features(n=10, d=6)
  with pytest.raises(ValueError, match='N > dx \\+ dy'):
    mid(x, y, x0)
  with pytest.raises(ValueError, match='one N'):
    mid(x, y[:5], x0)
  with pytest.raises(ValueError, match='one N'):
    mid(x, y, x0[:, :3])
  with pytest.raises(ValueError, match='eps'):
    mid(x, y, x0, eps=-1.0)
  with pytest.raises(ValueError, match='singular'):
    xs, ys, _ = _features(n=50, d=3)
    dup = np.hstack([xs, xs])  # rank-deficient X
    mid(dup, ys, dup)


# ------------------------------------------------------------------------------------------ CLIP score
def test_clip_score():
  rng = np.random.default_rng(6)
  a, b = rng.normal(size=(7, 16)), rng.normal(size=(7, 16))
  mean, per = clip_score(3.0 * a, b)  # scale-invariant
  want = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
  np.testing.assert_allclose(per, want, rtol=1e-12)
  assert mean == pytest.approx(want.mean())
  assert clip_score(a, a)[0] == pytest.approx(1.0)
  with pytest.raises(ValueError):
    clip_score(a, b[:3])
