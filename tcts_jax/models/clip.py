"""CLIP text and vision towers in Flax linen, loading HuggingFace ``CLIPModel`` safetensors.

Matches transformers' ``CLIPTextModelWithProjection`` / ``CLIPVisionModelWithProjection`` (5.x):
pre-LN transformer blocks, ``quick_gelu`` (or whatever ``hidden_act`` says), causal text mask, text
pooling at the EOS token (first position equal to ``eos_token_id``; legacy configs with
``eos_token_id == 2`` pool at ``argmax(input_ids)`` as transformers does), vision pooling at the class
token after ``post_layernorm``. Outputs are the projected, UNnormalised embeddings (HF ``text_embeds`` /
``image_embeds`` of the *WithProjection* models); L2-normalise before a cosine (``clip_score`` does).

Usage::

    config, text_params, vision_params = load_clip_from_safetensors("path/to/clip_dir")
    tok = transformers.CLIPTokenizer.from_pretrained("path/to/clip_dir")   # never vocab_file=...
    ids = tok(captions, padding="max_length", max_length=77, truncation=True, return_tensors="np")["input_ids"]
    t = encode_text(text_params, ids, config)
    v = encode_image(vision_params, preprocess_images(uint8_images, config.vision.image_size), config)

Layout: ``pixel_values`` are NHWC (JAX convention), not HF's NCHW. The padding attention mask is not
needed: with the causal mask the EOS state never sees the padding after it (HF gives the same pooled
output with or without ``attention_mask``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.utils.torch_params import read_safetensors

__all__ = [
  'CLIPTextConfig',
  'CLIPVisionConfig',
  'CLIPConfig',
  'CLIPTextTower',
  'CLIPVisionTower',
  'load_clip_from_safetensors',
  'load_clip_config',
  'encode_text',
  'encode_image',
  'preprocess_images',
  'CLIP_MEAN',
  'CLIP_STD',
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------- configs
@dataclasses.dataclass(frozen=True)
class CLIPTextConfig:
  vocab_size: int = 49408
  hidden_size: int = 512
  intermediate_size: int = 2048
  num_hidden_layers: int = 12
  num_attention_heads: int = 8
  max_position_embeddings: int = 77
  hidden_act: str = 'quick_gelu'
  layer_norm_eps: float = 1e-5
  projection_dim: int = 512
  eos_token_id: int = 49407


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
  hidden_size: int = 768
  intermediate_size: int = 3072
  num_hidden_layers: int = 12
  num_attention_heads: int = 12
  image_size: int = 224
  patch_size: int = 32
  num_channels: int = 3
  hidden_act: str = 'quick_gelu'
  layer_norm_eps: float = 1e-5
  projection_dim: int = 512


@dataclasses.dataclass(frozen=True)
class CLIPConfig:
  """``text`` / ``vision`` are None when the checkpoint holds only the other tower."""

  text: Optional[CLIPTextConfig]
  vision: Optional[CLIPVisionConfig]


def _sub_config(cls, d: dict, projection_dim: Optional[int]):
  names = {f.name for f in dataclasses.fields(cls)}
  kw = {k: v for k, v in d.items() if k in names and v is not None}
  if projection_dim is not None:  # CLIPModel projects with the TOP-level projection_dim
    kw['projection_dim'] = projection_dim
  return cls(**kw)


def _config_from_hf(d: dict) -> CLIPConfig:
  mt = d.get('model_type', 'clip')
  if 'text_config' in d or 'vision_config' in d or mt == 'clip':
    p = d.get('projection_dim')
    return CLIPConfig(
      _sub_config(CLIPTextConfig, d.get('text_config') or {}, p),
      _sub_config(CLIPVisionConfig, d.get('vision_config') or {}, p),
    )
  if mt == 'clip_text_model':
    return CLIPConfig(_sub_config(CLIPTextConfig, d, None), None)
  if mt == 'clip_vision_model':
    return CLIPConfig(None, _sub_config(CLIPVisionConfig, d, None))
  raise ValueError(f'config.json model_type {mt!r} is not a CLIP model')


# --------------------------------------------------------------------------------------- modules
def _act(name: str):
  if name == 'quick_gelu':
    return lambda x: x * jax.nn.sigmoid(1.702 * x)
  if name == 'gelu':
    return functools.partial(jax.nn.gelu, approximate=False)
  if name in ('gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'):
    return functools.partial(jax.nn.gelu, approximate=True)
  raise ValueError(f'unsupported hidden_act {name!r}')


def _ln(eps, name):
  return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


class _Attention(nn.Module):
  dim: int
  heads: int

  @nn.compact
  def __call__(self, x, mask):
    b, t, _ = x.shape
    hd = self.dim // self.heads
    split = lambda y: y.reshape(b, t, self.heads, hd)
    q = split(nn.Dense(self.dim, name='q_proj')(x))
    k = split(nn.Dense(self.dim, name='k_proj')(x))
    v = split(nn.Dense(self.dim, name='v_proj')(x))
    s = jnp.einsum('bqhd,bkhd->bhqk', q, k) * (hd**-0.5)
    if mask is not None:
      s = jnp.where(mask, s, jnp.finfo(s.dtype).min)
    a = jax.nn.softmax(s.astype(jnp.float32), axis=-1).astype(v.dtype)
    o = jnp.einsum('bhqk,bkhd->bqhd', a, v).reshape(b, t, self.dim)
    return nn.Dense(self.dim, name='out_proj')(o)


class _EncoderLayer(nn.Module):
  dim: int
  heads: int
  mlp_dim: int
  act: str
  eps: float

  @nn.compact
  def __call__(self, x, mask):
    x = x + _Attention(self.dim, self.heads, name='self_attn')(_ln(self.eps, 'layer_norm1')(x), mask)
    h = _ln(self.eps, 'layer_norm2')(x)
    h = nn.Dense(self.mlp_dim, name='fc1')(h)
    h = nn.Dense(self.dim, name='fc2')(_act(self.act)(h))
    return x + h


def _encoder(cfg, x, mask):
  """The encoder layers; returns the output of every layer (the last one is the encoder's output)."""
  outputs = []
  for i in range(cfg.num_hidden_layers):
    x = _EncoderLayer(
      cfg.hidden_size,
      cfg.num_attention_heads,
      cfg.intermediate_size,
      cfg.hidden_act,
      cfg.layer_norm_eps,
      name=f'layers_{i}',
    )(x, mask)
    outputs.append(x)
  return outputs


class CLIPTextTower(nn.Module):
  """input_ids (B, T) int -> projected text embeddings (B, projection_dim).

  With `hidden_states=True`: a dict of `text_embeds` (the same projection), `last_hidden_state` (after the
  final layer norm, HF's `last_hidden_state`) and `penultimate` (the second-to-last layer's output, no
  final norm: HF's `hidden_states[-2]`, what aMUSEd and Stable Diffusion 2 condition on).
  """

  config: CLIPTextConfig

  @nn.compact
  def __call__(self, input_ids, hidden_states: bool = False):
    c = self.config
    t = input_ids.shape[-1]
    x = nn.Embed(c.vocab_size, c.hidden_size, name='token_embedding')(input_ids)
    pos = self.param('position_embedding', nn.initializers.normal(0.01), (c.max_position_embeddings, c.hidden_size))
    x = x + pos[:t]
    causal = jnp.tril(jnp.ones((t, t), bool))[None, None]
    layers = _encoder(c, x, causal)
    x = _ln(c.layer_norm_eps, 'final_layer_norm')(layers[-1])
    if c.eos_token_id == 2:  # legacy configs: EOS is the largest id (transformers does the same)
      idx = jnp.argmax(input_ids, axis=-1)
    else:
      idx = jnp.argmax((input_ids == c.eos_token_id).astype(jnp.int32), axis=-1)
    pooled = jnp.take_along_axis(x, idx[:, None, None], axis=1)[:, 0]
    text_embeds = nn.Dense(c.projection_dim, use_bias=False, name='text_projection')(pooled)
    if not hidden_states:
      return text_embeds
    penultimate = layers[-2] if len(layers) > 1 else x
    return dict(text_embeds=text_embeds, last_hidden_state=x, penultimate=penultimate)


class CLIPVisionTower(nn.Module):
  """pixel_values (B, H, W, C) float, CLIP-normalised -> projected image embeddings (B, projection_dim)."""

  config: CLIPVisionConfig

  @nn.compact
  def __call__(self, pixel_values):
    c = self.config
    b, h, w, _ = pixel_values.shape
    if (h, w) != (c.image_size, c.image_size):
      raise ValueError(f'pixel_values are {h}x{w}, model expects {c.image_size}x{c.image_size}')
    p = c.patch_size
    x = nn.Conv(c.hidden_size, (p, p), strides=(p, p), padding='VALID', use_bias=False, name='patch_embedding')(
      pixel_values
    )
    x = x.reshape(b, -1, c.hidden_size)
    cls = self.param('class_embedding', nn.initializers.normal(0.01), (c.hidden_size,))
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (b, 1, c.hidden_size)), x], axis=1)
    pos = self.param('position_embedding', nn.initializers.normal(0.01), ((c.image_size // p) ** 2 + 1, c.hidden_size))
    x = _ln(c.layer_norm_eps, 'pre_layrnorm')(x + pos)
    x = _encoder(c, x, None)[-1]
    pooled = _ln(c.layer_norm_eps, 'post_layernorm')(x[:, 0])
    return nn.Dense(c.projection_dim, use_bias=False, name='visual_projection')(pooled)


# --------------------------------------------------------------------------------------- encode
def _text_cfg(config) -> CLIPTextConfig:
  c = config.text if isinstance(config, CLIPConfig) else config
  if not isinstance(c, CLIPTextConfig):
    raise ValueError('config has no text tower')
  return c


def _vision_cfg(config) -> CLIPVisionConfig:
  c = config.vision if isinstance(config, CLIPConfig) else config
  if not isinstance(c, CLIPVisionConfig):
    raise ValueError('config has no vision tower')
  return c


@functools.partial(jax.jit, static_argnames=('config',))
def _encode_text(params, input_ids, config):
  return CLIPTextTower(config).apply({'params': params}, input_ids)


@functools.partial(jax.jit, static_argnames=('config',))
def _encode_image(params, pixel_values, config):
  return CLIPVisionTower(config).apply({'params': params}, pixel_values)


def encode_text(params, input_ids, config) -> jax.Array:
  """Projected (unnormalised) text embeddings (B, projection_dim). ``config``: CLIPConfig or
  CLIPTextConfig. ``input_ids``: (B, T) with T <= max_position_embeddings, each row containing EOS."""
  c = _text_cfg(config)
  input_ids = jnp.asarray(input_ids, jnp.int32)
  if input_ids.ndim != 2 or input_ids.shape[1] > c.max_position_embeddings:
    raise ValueError(f'input_ids must be (B, T<= {c.max_position_embeddings}), got {input_ids.shape}')
  return _encode_text(params, input_ids, c)


def encode_image(params, pixel_values, config) -> jax.Array:
  """Projected (unnormalised) image embeddings (B, projection_dim) from NHWC ``pixel_values``
  (output of ``preprocess_images``). ``config``: CLIPConfig or CLIPVisionConfig."""
  return _encode_image(params, jnp.asarray(pixel_values, jnp.float32), _vision_cfg(config))


def preprocess_images(images, image_size: int, crop_size: Optional[int] = None) -> np.ndarray:
  """CLIP preprocessing in NumPy/PIL, as transformers' CLIPImageProcessor (PIL backend): resize the
  shortest side to ``image_size`` (bicubic, long side ``int(size*long/short)``), centre crop
  ``crop_size`` (default ``image_size``; top-left offset ``(h-c)//2``), scale to [0,1], normalise with
  CLIP mean/std. ``images``: uint8 (B, H, W, 3) array or a sequence of uint8 HWC arrays (sizes may
  differ; grayscale (H, W) is broadcast to RGB). Returns float32 NHWC."""
  from PIL import Image

  crop = image_size if crop_size is None else crop_size
  mean, std = np.asarray(CLIP_MEAN, np.float32), np.asarray(CLIP_STD, np.float32)
  out = []
  for im in images:
    im = np.asarray(im)
    if im.dtype != np.uint8:
      raise ValueError(f'preprocess_images expects uint8 images, got {im.dtype}')
    if im.ndim == 2:
      im = np.repeat(im[..., None], 3, axis=-1)
    h, w = im.shape[:2]
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(image_size * long / short)
    nh, nw = (new_long, image_size) if w <= h else (image_size, new_long)
    im = np.asarray(Image.fromarray(im).resize((nw, nh), resample=Image.BICUBIC))
    if nh < crop or nw < crop:
      raise ValueError(f'resized image {nh}x{nw} smaller than crop {crop}')
    top, left = (nh - crop) // 2, (nw - crop) // 2
    im = im[top : top + crop, left : left + crop]
    x = (im.astype(np.float64) * (1 / 255)).astype(np.float32)
    out.append((x - mean) / std)
  return np.stack(out).astype(np.float32)


# --------------------------------------------------------------------------------------- loading
_IGNORED_SUFFIXES = ('position_ids',)  # non-persistent buffers some old checkpoints still carry
_IGNORED_KEYS = {'logit_scale'}


def _layer_map(hf_prefix: str, ours: str):
  """(our param path, hf key, transform) for one encoder layer."""
  out = []
  for n in ('q_proj', 'k_proj', 'v_proj', 'out_proj'):
    out.append(((ours, 'self_attn', n, 'kernel'), f'{hf_prefix}.self_attn.{n}.weight', 'T'))
    out.append(((ours, 'self_attn', n, 'bias'), f'{hf_prefix}.self_attn.{n}.bias', None))
  for n in ('fc1', 'fc2'):
    out.append(((ours, n, 'kernel'), f'{hf_prefix}.mlp.{n}.weight', 'T'))
    out.append(((ours, n, 'bias'), f'{hf_prefix}.mlp.{n}.bias', None))
  for n in ('layer_norm1', 'layer_norm2'):
    out.append(((ours, n, 'scale'), f'{hf_prefix}.{n}.weight', None))
    out.append(((ours, n, 'bias'), f'{hf_prefix}.{n}.bias', None))
  return out


def _ln_map(ours, hf):
  return [((ours, 'scale'), f'{hf}.weight', None), ((ours, 'bias'), f'{hf}.bias', None)]


def _text_map(c: CLIPTextConfig, p: str):
  m = [
    (('token_embedding', 'embedding'), f'{p}embeddings.token_embedding.weight', None),
    (('position_embedding',), f'{p}embeddings.position_embedding.weight', None),
    (('text_projection', 'kernel'), 'text_projection.weight', 'T'),
  ]
  m += _ln_map('final_layer_norm', f'{p}final_layer_norm')
  for i in range(c.num_hidden_layers):
    m += _layer_map(f'{p}encoder.layers.{i}', f'layers_{i}')
  return m


def _vision_map(c: CLIPVisionConfig, p: str):
  m = [
    (('class_embedding',), f'{p}embeddings.class_embedding', None),
    (('patch_embedding', 'kernel'), f'{p}embeddings.patch_embedding.weight', 'conv'),
    (('position_embedding',), f'{p}embeddings.position_embedding.weight', None),
    (('visual_projection', 'kernel'), 'visual_projection.weight', 'T'),
  ]
  m += _ln_map('pre_layrnorm', f'{p}pre_layrnorm') + _ln_map('post_layernorm', f'{p}post_layernorm')
  for i in range(c.num_hidden_layers):
    m += _layer_map(f'{p}encoder.layers.{i}', f'layers_{i}')
  return m


def _expected_shapes(module, example):
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), example)['params']
  return jax.tree_util.tree_map(lambda s: tuple(s.shape), shapes)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _build(mapping, tensors, used, missing, expected, errors):
  params: dict = {}
  for path, key, tf in mapping:
    if key not in tensors:
      missing.append(key)
      continue
    used.add(key)
    a = np.asarray(tensors[key], np.float32)
    if tf == 'T':
      a = a.T
    elif tf == 'conv':  # torch (out, in, kh, kw) -> flax (kh, kw, in, out)
      a = a.transpose(2, 3, 1, 0)
    try:
      want = _get(expected, path)
    except KeyError:
      errors.append(f'{key}: no parameter {"/".join(path)} in the Flax module')
      continue
    if a.shape != want:
      errors.append(f'{key}: shape {a.shape} (after transpose) != expected {want} from config.json')
      continue
    d = params
    for k in path[:-1]:
      d = d.setdefault(k, {})
    d[path[-1]] = jnp.asarray(a)
  return params


def _read_tensors(path_or_dir: str):
  """(config.json, tensors) of a CLIP checkpoint directory, or of one safetensors file with config.json beside it."""
  if os.path.isdir(path_or_dir):
    return read_safetensors(path_or_dir, 'CLIP checkpoint')
  from safetensors.numpy import load_file

  if not os.path.exists(path_or_dir):
    raise FileNotFoundError(f'no safetensors file {path_or_dir}')
  cfg_path = os.path.join(os.path.dirname(os.path.abspath(path_or_dir)), 'config.json')
  if not os.path.exists(cfg_path):
    raise FileNotFoundError(f'no config.json next to the weights ({cfg_path})')
  with open(cfg_path) as fh:
    return json.load(fh), load_file(path_or_dir)


def _prefix(tensors, tower: str, marker: str) -> str:
  """'text_model.' / 'vision_model.' if the checkpoint uses it for this tower, else ''."""
  return f'{tower}.' if f'{tower}.{marker}' in tensors else ''


def load_clip_config(directory) -> CLIPConfig:
  """The CLIPConfig of a HF CLIP directory's config.json (no weights read)."""
  path = os.path.join(directory, 'config.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no CLIP config.json in {directory}')
  with open(path) as fh:
    return _config_from_hf(json.load(fh))


def load_clip_from_safetensors(path_or_dir: str):
  """Read a HF CLIP checkpoint (``model.safetensors`` [or sharded index] + ``config.json``).

  Accepts the ``CLIPModel`` layout and single-tower ``CLIPText/VisionModel[WithProjection]`` files,
  with or without the ``text_model.`` / ``vision_model.`` key prefix (transformers versions differ).
  Every key is mapped by name; raises ValueError listing missing keys, unused keys (other than
  ``logit_scale`` and ``*position_ids`` buffers) and shape mismatches against config.json.

  Returns ``(config, text_params, vision_params)``; a tower absent from the checkpoint's config is
  ``None``. Params are float32 Flax param trees for ``CLIPTextTower`` / ``CLIPVisionTower``.
  """
  hf_cfg, tensors = _read_tensors(path_or_dir)
  config = _config_from_hf(hf_cfg)
  used, missing, errors = set(), [], []
  text_params = vision_params = None
  if config.text is not None:
    p = _prefix(tensors, 'text_model', 'embeddings.token_embedding.weight')
    exp = _expected_shapes(CLIPTextTower(config.text), jnp.zeros((1, 1), jnp.int32))
    text_params = _build(_text_map(config.text, p), tensors, used, missing, exp, errors)
  if config.vision is not None:
    p = _prefix(tensors, 'vision_model', 'embeddings.class_embedding')
    s = config.vision.image_size
    exp = _expected_shapes(
      CLIPVisionTower(config.vision), jnp.zeros((1, s, s, config.vision.num_channels), jnp.float32)
    )
    vision_params = _build(_vision_map(config.vision, p), tensors, used, missing, exp, errors)
  unused = sorted(k for k in tensors if k not in used and k not in _IGNORED_KEYS and not k.endswith(_IGNORED_SUFFIXES))
  if missing or unused or errors:
    msg = [f'CLIP checkpoint {path_or_dir} does not match config.json / the Flax towers:']
    if missing:
      msg.append(f'  missing keys ({len(missing)}): {missing}')
    if unused:
      msg.append(f'  unused keys ({len(unused)}): {unused}')
    msg += [f'  {e}' for e in errors]
    raise ValueError('\n'.join(msg))
  return config, text_params, vision_params
