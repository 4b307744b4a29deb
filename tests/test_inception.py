"""FID Inception-V3 structure, weight loading (npz / safetensors) and a 299x299 forward, random weights."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from safetensors.numpy import save_file

from tcts_jax.models.inception import BasicConv, init_inception, inception_features, load_inception


@pytest.fixture(scope='module')
def params():
  return init_inception(seed=0)


def _state_dict(params):
  """Export to pytorch-fid state-dict naming/layout (what the converted pt_inception file holds)."""
  sd = {}
  for path, v in flatten_dict(params).items():
    v = np.asarray(v)
    mods, leaf = list(path[:-1]), path[-1]
    if leaf == 'kernel':
      # ascontiguousarray: safetensors 0.8 numpy save_file writes strided arrays wrongly
      sd['.'.join(mods[:-1] + ['conv.weight'])] = np.ascontiguousarray(v.transpose(3, 2, 0, 1))
    else:
      name = {'bn_scale': 'weight', 'bn_bias': 'bias', 'bn_mean': 'running_mean', 'bn_var': 'running_var'}[leaf]
      sd['.'.join(mods + ['bn', name])] = v
      if leaf == 'bn_var':
        sd['.'.join(mods + ['bn', 'num_batches_tracked'])] = np.array(0, np.int64)
  sd['fc.weight'] = np.zeros((1008, 2048), np.float32)
  sd['fc.bias'] = np.zeros((1008,), np.float32)
  return sd


def test_structure(params):
  flat = flatten_dict(params)
  kernels = {k: v.shape for k, v in flat.items() if k[-1] == 'kernel'}
  assert len(kernels) == 94
  # conv + BN affine parameter count equals torchvision's inception_v3 (27,161,264) minus
  # AuxLogits (3,326,696) and fc (2,049,000)
  assert sum(v.size for k, v in flat.items() if k[-1] in ('kernel', 'bn_scale', 'bn_bias')) == 21_785_568
  assert kernels[('Conv2d_1a_3x3', 'conv', 'kernel')] == (3, 3, 3, 32)
  assert kernels[('Mixed_6b', 'branch7x7_2', 'conv', 'kernel')] == (1, 7, 128, 128)
  assert kernels[('Mixed_7c', 'branch_pool', 'conv', 'kernel')] == (1, 1, 2048, 192)


def test_basic_conv_batchnorm():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1, 5, 5, 4)).astype(np.float32)
  p = {
    'conv': {'kernel': rng.normal(size=(1, 1, 4, 3)).astype(np.float32)},
    'bn_scale': rng.uniform(0.5, 2, 3).astype(np.float32),
    'bn_bias': rng.normal(size=3).astype(np.float32),
    'bn_mean': rng.normal(size=3).astype(np.float32),
    'bn_var': rng.uniform(0.5, 2, 3).astype(np.float32),
  }
  got = BasicConv(3).apply({'params': p}, jnp.asarray(x))
  y = x @ p['conv']['kernel'][0, 0]
  want = np.maximum((y - p['bn_mean']) / np.sqrt(p['bn_var'] + 1e-3) * p['bn_scale'] + p['bn_bias'], 0)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('ext', ['npz', 'safetensors'])
def test_load_roundtrip(params, tmp_path, ext):
  sd = _state_dict(params)
  path = str(tmp_path / f'inception.{ext}')
  np.savez(path, **sd) if ext == 'npz' else save_file(sd, path)
  loaded = load_inception(path)
  a, b = flatten_dict(params), flatten_dict(loaded)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))


def test_load_errors(params, tmp_path):
  sd = _state_dict(params)
  del sd['Mixed_5b.branch_pool.bn.running_var']
  sd['Mixed_5b.extra.weight'] = np.zeros(2, np.float32)
  path = str(tmp_path / 'bad.npz')
  np.savez(path, **sd)
  with pytest.raises(ValueError) as e:
    load_inception(path)
  assert 'Mixed_5b.branch_pool.bn.running_var' in str(e.value)
  assert 'Mixed_5b.extra.weight' in str(e.value)
  with pytest.raises(ValueError, match='never pickle'):
    (tmp_path / 'w.pth').write_bytes(b'x')
    load_inception(str(tmp_path / 'w.pth'))
  with pytest.raises(FileNotFoundError):
    load_inception(str(tmp_path / 'missing.npz'))


def test_forward_299(params):
  """Full reference path: 64x64 uint8 -> bilinear 299 -> [-1, 1] -> pool3 (about 3 s on CPU)."""
  x = np.random.default_rng(1).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
  f = inception_features(params, x)
  assert f.shape == (2, 2048) and f.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(f))) and bool(jnp.all(f >= 0))  # mean of ReLU outputs
  f2 = inception_features(params, x.astype(np.float32) / 255.0)
  np.testing.assert_allclose(np.asarray(f2), np.asarray(f), rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(f[0]), np.asarray(f[1]))
  with pytest.raises(ValueError, match=r'\(B, H, W, 3\)'):
    inception_features(params, x[0])
