"""FID Inception-V3 (TF "2015-12-05" graph as ported by pytorch-fid) in Flax linen: pool3, 2048-d.

Same architecture as pytorch-fid's ``InceptionV3(output_blocks=[3], use_fid_inception=True)``:
torchvision's Inception-V3 trunk (BasicConv2d = conv without bias + BatchNorm(eps=1e-3) + ReLU) with the
FID patches: average pools in Mixed_5b-d / 6b-e / 7b ignore padding (``count_include_pad=False``), Mixed_7c
uses a 3x3 MAX pool in its pool branch, then global average pooling -> 2048 features. Input handling as
pytorch-fid: images in [0, 1] (uint8 is divided by 255), bilinear resize to 299x299
(``align_corners=False``, no antialiasing: ``jax.image.resize(..., antialias=False)`` matches
``F.interpolate`` to 1e-7), then ``2x - 1``. Inference only (BatchNorm uses the stored statistics).

Weights: no download at run time. Get pytorch-fid's port of the TF FID weights once, on a machine with
internet, and convert it to a pickle-free file we read::

    # https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth
    import numpy as np, torch
    sd = torch.load("pt_inception-2015-12-05-6726825d.pth", map_location="cpu", weights_only=True)
    np.savez("pt_inception-2015-12-05.npz", **{k: v.numpy() for k, v in sd.items()})
    # or: from safetensors.torch import save_file; save_file({k: v.contiguous() for k, v in sd.items()},
    #     "pt_inception-2015-12-05.safetensors")

``load_inception(path)`` maps the state-dict keys (``Mixed_5b.branch1x1.conv.weight``,
``...bn.running_mean``, ...) by name and raises on any missing / unexpected key or shape;
``fc.*`` (the 1008-way classifier) and ``*.num_batches_tracked`` are ignored.

Usage::

    params = load_inception("weights/pt_inception-2015-12-05.npz")
    feats = inception_features(params, images_uint8_nhwc)   # (B, 2048) float32
    fid = tcts_jax.metrics.fid_from_features(feats_real, feats_fake)
"""

from __future__ import annotations

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = ['FIDInceptionV3', 'load_inception', 'inception_features', 'init_inception', 'param_shapes', 'FEATURE_DIM']

FEATURE_DIM = 2048


class BasicConv(nn.Module):
  """conv (no bias) + inference BatchNorm(eps=1e-3) + ReLU; all four BN arrays live in ``params``."""

  features: int
  kernel: tuple = (1, 1)
  stride: int = 1
  padding: tuple = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(
      self.features, self.kernel, strides=self.stride, padding=((ph, ph), (pw, pw)), use_bias=False, name='conv'
    )(x)
    f = (self.features,)
    scale = self.param('bn_scale', nn.initializers.ones, f)
    bias = self.param('bn_bias', nn.initializers.zeros, f)
    mean = self.param('bn_mean', nn.initializers.zeros, f)
    var = self.param('bn_var', nn.initializers.ones, f)
    return nn.relu((x - mean) * (scale * jax.lax.rsqrt(var + 1e-3)) + bias)


def _avg_pool_3x3_exclude_pad(x):
  """3x3 / stride 1 / pad 1 average that divides by the number of real (non-padded) inputs."""
  s = nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)
  return s


def _max_pool_3x3_s1(x):
  return nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(64, name='branch1x1')(x)
    b5 = BasicConv(48, name='branch5x5_1')(x)
    b5 = BasicConv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = BasicConv(64, name='branch3x3dbl_1')(x)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = BasicConv(self.pool_features, name='branch_pool')(_avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(384, (3, 3), stride=2, name='branch3x3')(x)
    bd = BasicConv(64, name='branch3x3dbl_1')(x)
    bd = BasicConv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = BasicConv(96, (3, 3), stride=2, name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    b1 = BasicConv(192, name='branch1x1')(x)
    b7 = BasicConv(c, name='branch7x7_1')(x)
    b7 = BasicConv(c, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = BasicConv(c, name='branch7x7dbl_1')(x)
    bd = BasicConv(c, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = BasicConv(c, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = BasicConv(c, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = BasicConv(192, name='branch_pool')(_avg_pool_3x3_exclude_pad(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv(192, name='branch3x3_1')(x)
    b3 = BasicConv(320, (3, 3), stride=2, name='branch3x3_2')(b3)
    b7 = BasicConv(192, name='branch7x7x3_1')(x)
    b7 = BasicConv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = BasicConv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = BasicConv(192, (3, 3), stride=2, name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  max_pool: bool  # FID patch: Mixed_7c (E_2) max-pools in its pool branch, Mixed_7b (E_1) averages

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv(320, name='branch1x1')(x)
    b3 = BasicConv(384, name='branch3x3_1')(x)
    b3 = jnp.concatenate(
      [
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3),
      ],
      -1,
    )
    bd = BasicConv(448, name='branch3x3dbl_1')(x)
    bd = BasicConv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate(
      [
        BasicConv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
        BasicConv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd),
      ],
      -1,
    )
    pooled = _max_pool_3x3_s1(x) if self.max_pool else _avg_pool_3x3_exclude_pad(x)
    bp = BasicConv(192, name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """images (B, H, W, 3) in [0, 1] -> pool3 features (B, 2048).

  ``resize_to`` (default 299, as the reference) is the bilinear resize target; ``None`` skips the
  resize. The trunk itself works at any size >= 75x75 (used by the fast tests)."""

  resize_to: int | None = 299

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32)
    if self.resize_to is not None:
      b, _, _, c = x.shape
      x = jax.image.resize(x, (b, self.resize_to, self.resize_to, c), 'bilinear', antialias=False)
    x = 2.0 * x - 1.0
    x = BasicConv(32, (3, 3), stride=2, name='Conv2d_1a_3x3')(x)
    x = BasicConv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = BasicConv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = BasicConv(80, name='Conv2d_3b_1x1')(x)
    x = BasicConv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = _max_pool_3x3_s2(x)
    x = InceptionA(32, name='Mixed_5b')(x)
    x = InceptionA(64, name='Mixed_5c')(x)
    x = InceptionA(64, name='Mixed_5d')(x)
    x = InceptionB(name='Mixed_6a')(x)
    x = InceptionC(128, name='Mixed_6b')(x)
    x = InceptionC(160, name='Mixed_6c')(x)
    x = InceptionC(160, name='Mixed_6d')(x)
    x = InceptionC(192, name='Mixed_6e')(x)
    x = InceptionD(name='Mixed_7a')(x)
    x = InceptionE(max_pool=False, name='Mixed_7b')(x)
    x = InceptionE(max_pool=True, name='Mixed_7c')(x)
    return x.mean(axis=(1, 2))


# --------------------------------------------------------------------------------------- features
@functools.partial(jax.jit, static_argnames=('resize_to',))
def _features(params, images, resize_to):
  return FIDInceptionV3(resize_to).apply({'params': params}, images)


def inception_features(params, images, resize_to: int | None = 299) -> jax.Array:
  """pool3 features (B, 2048) of NHWC images: uint8 in [0, 255] or float in [0, 1]."""
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be (B, H, W, 3), got {images.shape}')
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.float32) / 255.0
  return _features(params, images.astype(jnp.float32), resize_to)


def param_shapes(size: int = 75):
  """Flax param tree of shapes (tuples); does not depend on ``size``."""
  tree = jax.eval_shape(FIDInceptionV3(None).init, jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)))
  return jax.tree_util.tree_map(lambda s: tuple(s.shape), tree['params'])


def init_inception(seed: int = 0):
  """Random params for tests (He-normal kernels, identity BatchNorm). Built with NumPy from the
  shapes: ``FIDInceptionV3.init`` works too but takes ~30 s to compile on CPU."""
  rng = np.random.default_rng(seed)
  fill = {'bn_scale': np.ones, 'bn_var': np.ones, 'bn_bias': np.zeros, 'bn_mean': np.zeros}

  def make(path, shape):
    leaf = path[-1].key
    if leaf == 'kernel':
      fan_in = int(np.prod(shape[:-1]))
      return jnp.asarray(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))
    return jnp.asarray(fill[leaf](shape, np.float32))

  return jax.tree_util.tree_map_with_path(make, param_shapes(), is_leaf=lambda x: isinstance(x, tuple))


# --------------------------------------------------------------------------------------- loading
_BN = {'bn_scale': 'bn.weight', 'bn_bias': 'bn.bias', 'bn_mean': 'bn.running_mean', 'bn_var': 'bn.running_var'}


def _torch_key(path) -> str:
  """Flax param path -> pytorch-fid state-dict key."""
  *mods, leaf = path
  if leaf == 'kernel':
    return '.'.join(mods[:-1] + ['conv.weight'])  # mods[-1] == "conv"
  return '.'.join(mods + [_BN[leaf]])


def _flat(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, dict):
      yield from _flat(v, prefix + (k,))
    else:
      yield prefix + (k,), v


def _read(path: str) -> dict:
  if not os.path.exists(path):
    raise FileNotFoundError(f'no Inception weights at {path} (see tcts_jax/models/inception.py docstring)')
  if path.endswith('.safetensors'):
    from safetensors.numpy import load_file

    return load_file(path)
  if path.endswith('.npz'):
    with np.load(path, allow_pickle=False) as z:
      return {k: z[k] for k in z.files}
  raise ValueError(f'Inception weights must be .npz or .safetensors (never pickle), got {path}')


def load_inception(path: str):
  """Read pytorch-fid FID-Inception weights (state-dict key names) from ``.npz``/``.safetensors``."""
  tensors = _read(path)
  expected = param_shapes()
  params, used, missing, errors = {}, set(), [], []
  for p, shape in _flat(expected):
    key = _torch_key(p)
    if key not in tensors:
      missing.append(key)
      continue
    used.add(key)
    a = np.asarray(tensors[key], np.float32)
    if p[-1] == 'kernel':
      a = a.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    if a.shape != shape:
      errors.append(f'{key}: shape {a.shape} != expected {shape}')
      continue
    d = params
    for k in p[:-1]:
      d = d.setdefault(k, {})
    d[p[-1]] = jnp.asarray(a)
  unused = sorted(
    k for k in tensors if k not in used and not k.startswith('fc.') and not k.endswith('num_batches_tracked')
  )
  if missing or unused or errors:
    msg = [f'Inception weights {path} do not match the FID Inception-V3:']
    if missing:
      msg.append(f'  missing keys ({len(missing)}): {missing[:20]}{" ..." if len(missing) > 20 else ""}')
    if unused:
      msg.append(f'  unused keys ({len(unused)}): {unused[:20]}{" ..." if len(unused) > 20 else ""}')
    msg += [f'  {e}' for e in errors]
    raise ValueError('\n'.join(msg))
  return params
