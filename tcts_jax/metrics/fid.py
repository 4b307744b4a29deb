"""Fréchet distance between Gaussians fitted to features (FID when the features are Inception pool3).

``FID = ‖μ1−μ2‖² + tr Σ1 + tr Σ2 − 2 tr sqrtm(Σ1 Σ2)``, covariances with N−1 (as pytorch-fid / TF FID).
``tr sqrtm(Σ1Σ2)`` is computed as ``Σ_i sqrt(λ_i)``, λ the eigenvalues of the symmetric PSD matrix
``Σ1^½ Σ2 Σ1^½`` (same spectrum as Σ1Σ2), with ``Σ1^½`` from ``eigh``; eigenvalues below 0 (round-off)
are clipped to 0. Everything runs in float64 in JAX inside a local ``jax.enable_x64(True)`` context
(never global: after the call ``jnp.zeros(1).dtype`` is still float32). Results come back as Python
floats / float64 NumPy arrays.

Singular covariances (N <= dim, e.g. fewer than 2049 images for 2048-d Inception features) are fine
here: the eigh route needs no inverse and no ``sqrtm`` of a singular product (scipy's ``sqrtm`` route in
pytorch-fid adds an ``eps·I`` offset in that case), so the value is still defined — but it is a biased,
high-variance estimate; compare FIDs only at equal N.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['frechet_distance', 'feature_statistics', 'fid_from_features']


def _as_2d(features, name: str) -> np.ndarray:
  f = np.asarray(features)
  if f.ndim != 2:
    raise ValueError(f'{name} must be (N, dim), got shape {f.shape}')
  if f.shape[0] < 2:
    raise ValueError(f'{name} needs at least 2 samples for a covariance, got N={f.shape[0]}')
  if not np.issubdtype(f.dtype, np.number):
    raise ValueError(f'{name} must be numeric, got {f.dtype}')
  return f


def _sym(a):
  return 0.5 * (a + a.T)


def feature_statistics(features):
  """(mean, covariance) of (N, dim) features, float64 NumPy, covariance normalised by N−1."""
  f = _as_2d(features, 'features')
  with jax.enable_x64(True):
    x = jnp.asarray(f, jnp.float64)
    mu = x.mean(axis=0)
    xc = x - mu
    sigma = xc.T @ xc / (x.shape[0] - 1)
    return np.asarray(mu), np.asarray(sigma)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (float64, eigh route)."""
  mu1, mu2 = np.atleast_1d(np.asarray(mu1)), np.atleast_1d(np.asarray(mu2))
  sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1)), np.atleast_2d(np.asarray(sigma2))
  d = mu1.shape[0]
  if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
    raise ValueError(f'shape mismatch: mu1 {mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}')
  with jax.enable_x64(True):
    m1, m2 = jnp.asarray(mu1, jnp.float64), jnp.asarray(mu2, jnp.float64)
    s1, s2 = _sym(jnp.asarray(sigma1, jnp.float64)), _sym(jnp.asarray(sigma2, jnp.float64))
    w, u = jnp.linalg.eigh(s1)
    s1_half = (u * jnp.sqrt(jnp.clip(w, 0.0))) @ u.T
    lam = jnp.linalg.eigvalsh(_sym(s1_half @ s2 @ s1_half))
    tr_covmean = jnp.sum(jnp.sqrt(jnp.clip(lam, 0.0)))
    diff = m1 - m2
    out = diff @ diff + jnp.trace(s1) + jnp.trace(s2) - 2.0 * tr_covmean
    return float(out)


def fid_from_features(a, b) -> float:
  """Fréchet distance between the Gaussians fitted to feature sets a (N, dim) and b (M, dim)."""
  a, b = _as_2d(a, 'a'), _as_2d(b, 'b')
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'feature dims differ: {a.shape[1]} vs {b.shape[1]}')
  return frechet_distance(*feature_statistics(a), *feature_statistics(b))
