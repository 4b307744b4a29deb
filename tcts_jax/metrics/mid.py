"""Mutual Information Divergence (MID; Kim et al., 2022, reference code naver-ai/mid.metric).

Inputs: ``x`` (N, dx) real image features, ``y`` (N, dy) caption features paired row-wise with ``x``,
``x0`` (N, dx) generated image features, row i generated from caption i. Rows are L2-normalised first
(``normalize=True``; the reference normalises CLIP features before the metric). All in float64 (JAX,
local ``jax.enable_x64`` context, never global).

With ``z = [x; y]`` (concatenated features, dz = dx + dy), the real means μx, μy, μz = [μx; μy] and
``C(a, b, μ) = (a − μ)ᵀ(b − μ) / (N − 1)``:

* ``X = C(x, x, μx)``, ``Y = C(y, y, μy)``, ``Z = C(z, z, μz)``: covariances of the REAL data;
* ``X0 = C(x0, x0, μx)``, ``Z0 = C(z0, z0, μz)`` with ``z0 = [x0; y]``: second moments of the
  generated features around the REAL means (not their own), normalised by N − 1 as in the reference;
* ``MI = ½[logdet X + logdet Y − logdet Z]`` (Gaussian mutual information of the real pairs);
* ``MID = MI + ½[tr(X⁻¹X0) + tr(Y⁻¹Y) − tr(Z⁻¹Z0)]``; ``tr(Y⁻¹Y) = d = dy`` exactly when ``eps = 0``
  (the captions are the same on both sides);
* ``PMI_i = MI + ½[D²_X(x0_i) + D²_Y(y_i) − D²_Z(z0_i)]``, ``D²_A(v) = (v − μ)ᵀA⁻¹(v − μ)``.

Hence ``mean_i PMI_i = MI + (N−1)/N · (MID − MI)`` (the N−1 vs N normalisation), and ``x0 = x`` gives
``MID = MI``.

``eps`` adds ``eps·I`` to X, Y and Z (logdets, inverses and ``tr(Y⁻¹Y)`` all use the ridged matrices;
the mean-PMI identity still holds, ``MID = MI`` at ``x0 = x`` only approximately). The reference suggests ~5e-4 for L2-normalised CLIP features with
fewer than ~30k samples. With ``eps = 0`` the metric needs ``N > dx + dy`` (otherwise Z is singular) and
raises ValueError if not; a numerically singular X, Y or Z (min eigenvalue <= dim·eps64·max eigenvalue,
e.g. duplicated feature columns) also raises.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['mid']


def _check(a, name):
  a = np.asarray(a)
  if a.ndim != 2 or not np.issubdtype(a.dtype, np.number):
    raise ValueError(f'{name} must be a numeric (N, dim) array, got shape {a.shape} {a.dtype}')
  return a


def _normalize(a):
  return a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)


def _spd(a, eps, name):
  """eigh of the symmetrised, ridged matrix; raises if not positive definite."""
  a = 0.5 * (a + a.T) + eps * jnp.eye(a.shape[0], dtype=a.dtype)
  w, u = jnp.linalg.eigh(a)
  tol = a.shape[0] * np.finfo(np.float64).eps * float(jnp.abs(w).max())  # numerical-rank tolerance
  if float(w.min()) <= tol:
    raise ValueError(
      f'MID: covariance {name} is singular or not positive definite (min eigenvalue '
      f'{float(w.min()):.3g}, tolerance {tol:.3g}); use more samples or eps > 0'
    )
  return w, u


def _logdet(wu):
  return jnp.sum(jnp.log(wu[0]))


def _tr_inv(wu, b):
  """tr(A⁻¹ B) with A = U diag(w) Uᵀ."""
  w, u = wu
  return jnp.sum(jnp.diagonal(u.T @ b @ u) / w)


def _maha(wu, v):
  """Row-wise vᵀA⁻¹v for centred rows v (N, d)."""
  w, u = wu
  return jnp.sum((v @ u) ** 2 / w, axis=-1)


def mid(x, y, x0, *, eps: float = 0.0, normalize: bool = True):
  """Mutual Information Divergence. Returns ``(mid_value: float, pmi: np.ndarray (N,))``.

  x: real image features (N, dx); y: caption features (N, dy); x0: generated image features (N, dx),
  paired row-wise with y. See the module docstring for the exact definitions.
  """
  x, y, x0 = _check(x, 'x'), _check(y, 'y'), _check(x0, 'x0')
  n, dx = x.shape
  dy = y.shape[1]
  if y.shape[0] != n or x0.shape != (n, dx):
    raise ValueError(f'need x (N, dx), y (N, dy), x0 (N, dx) with one N; got {x.shape}, {y.shape}, {x0.shape}')
  if n < 2:
    raise ValueError(f'MID needs at least 2 samples, got N={n}')
  if eps < 0:
    raise ValueError(f'eps must be >= 0, got {eps}')
  if eps == 0 and n <= dx + dy:
    raise ValueError(
      f'MID without regularisation needs N > dx + dy = {dx + dy} samples (joint '
      f'covariance is singular otherwise), got N={n}; pass eps > 0 (e.g. 5e-4)'
    )
  with jax.enable_x64(True):
    x, y, x0 = (jnp.asarray(a, jnp.float64) for a in (x, y, x0))
    if normalize:
      x, y, x0 = _normalize(x), _normalize(y), _normalize(x0)
    z, z0 = jnp.concatenate([x, y], -1), jnp.concatenate([x0, y], -1)
    mx, my, mz = x.mean(0), y.mean(0), z.mean(0)
    xc, yc, zc, x0c, z0c = x - mx, y - my, z - mz, x0 - mx, z0 - mz
    cov = lambda a: a.T @ a / (n - 1)
    X, Y, Z, X0, Z0 = cov(xc), cov(yc), cov(zc), cov(x0c), cov(z0c)
    ex, ey, ez = _spd(X, eps, 'X'), _spd(Y, eps, 'Y'), _spd(Z, eps, 'Z')
    mi = 0.5 * (_logdet(ex) + _logdet(ey) - _logdet(ez))
    mid_value = mi + 0.5 * (_tr_inv(ex, X0) + _tr_inv(ey, Y) - _tr_inv(ez, Z0))
    pmi = mi + 0.5 * (_maha(ex, x0c) + _maha(ey, yc) - _maha(ez, z0c))
    return float(mid_value), np.asarray(pmi)
