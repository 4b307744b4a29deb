"""The aMUSEd VQGAN in Flax: images <-> codebook indices, as diffusers' `VQModel` computes them.

Matches diffusers 0.42.1 ``VQModel`` (``Encoder`` / ``Decoder`` of ``DownEncoderBlock2D`` /
``UpDecoderBlock2D`` blocks, ``UNetMidBlock2D`` with or without its self-attention, ``ResnetBlock2D``,
``Downsample2D`` / ``Upsample2D`` and the ``VectorQuantizer``) for ``norm_type='group'`` configs, the ones
aMUSEd ships. Layout conventions:

- images and feature maps are NHWC (diffusers: NCHW); input images are in [0, 1], as the aMUSEd pipelines
  feed them (no rescaling to [-1, 1]); decoded images are not clipped (the pipeline clips afterwards);
- token indices are ``(B, h * w)`` int32, row-major over the ``(h, w)`` grid, as diffusers flattens them;
- every submodule carries its torch attribute name (a list member ``i`` of ``resnets`` is ``resnets_i``),
  so `tcts_jax.utils.torch_params.params_from_torch` maps a diffusers state dict by name alone;
- the computation runs in the params' dtype (float32, or bfloat16 from ``load_vqgan(..., dtype)``); the
  nearest-code search always runs in float32.
"""

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from tcts_jax.utils.torch_params import params_from_torch, read_safetensors

DOWN_BLOCK = 'DownEncoderBlock2D'
UP_BLOCK = 'UpDecoderBlock2D'
NORM_EPS = 1e-6  # every GroupNorm of the diffusers Encoder / Decoder (resnets, attention, conv_norm_out)

# diffusers `get_activation` (the resnets' `act_fn`; conv_act before conv_out is always SiLU).
ACTIVATIONS = {
  'silu': nn.silu,
  'swish': nn.silu,
  'gelu': functools.partial(nn.gelu, approximate=False),
  'relu': nn.relu,
  'mish': lambda x: x * jnp.tanh(nn.softplus(x)),
}


@dataclasses.dataclass(frozen=True)
class VQConfig:
  """diffusers' `VQModel` config: the same names and defaults; unsupported values raise ValueError."""

  in_channels: int = 3
  out_channels: int = 3
  down_block_types: tuple[str, ...] = (DOWN_BLOCK,)
  up_block_types: tuple[str, ...] = (UP_BLOCK,)
  block_out_channels: tuple[int, ...] = (64,)
  layers_per_block: int = 1
  act_fn: str = 'silu'
  latent_channels: int = 3
  sample_size: int = 32
  num_vq_embeddings: int = 256
  norm_num_groups: int = 32
  vq_embed_dim: int | None = None
  scaling_factor: float = 0.18215
  norm_type: str = 'group'
  mid_block_add_attention: bool = True
  lookup_from_codebook: bool = False
  force_upcast: bool = False

  def __post_init__(self):
    for name in ('down_block_types', 'up_block_types', 'block_out_channels'):
      object.__setattr__(self, name, tuple(getattr(self, name)))
    problems = self._unsupported()
    if problems:
      raise ValueError('unsupported VQModel config: ' + '; '.join(problems))

  def _unsupported(self) -> list[str]:
    """What this port does not implement, one line each."""
    problems = []
    if self.norm_type != 'group':
      problems.append(f'norm_type {self.norm_type!r} (only "group"; the "spatial" SpatialNorm decoder is not ported)')
    blocks = len(self.block_out_channels)
    for name, kind in (('down_block_types', DOWN_BLOCK), ('up_block_types', UP_BLOCK)):
      types = getattr(self, name)
      if any(t != kind for t in types):
        problems.append(f'{name} {list(types)} (only {kind!r})')
      if len(types) != blocks:
        problems.append(f'{len(types)} {name} for {blocks} block_out_channels')
    if self.act_fn not in ACTIVATIONS:
      problems.append(f'act_fn {self.act_fn!r} (one of {sorted(ACTIVATIONS)})')
    if not blocks or any(c % self.norm_num_groups for c in self.block_out_channels):
      problems.append(f'block_out_channels {list(self.block_out_channels)} for {self.norm_num_groups} norm groups')
    return problems

  @classmethod
  def from_json_dict(cls, d: dict) -> 'VQConfig':
    """The config of a diffusers `config.json` dict: keys starting with `_` (class name, version) are
    metadata and skipped, a missing key takes diffusers' default, an unknown key raises ValueError."""
    values = {k: v for k, v in d.items() if not k.startswith('_')}
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
      raise ValueError(f'unknown VQModel config keys: {unknown}')
    return cls(**values)

  @property
  def embed_dim(self) -> int:
    """Channels of a codebook entry (`vq_embed_dim`, by default `latent_channels`)."""
    return self.vq_embed_dim if self.vq_embed_dim is not None else self.latent_channels

  @property
  def downsample_factor(self) -> int:
    """Image pixels per token, per side: every block but the last halves the resolution."""
    return 2 ** (len(self.block_out_channels) - 1)


def _group_norm(groups: int) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=groups, epsilon=NORM_EPS, use_fast_variance=False)


def _conv3x3(features: int) -> nn.Conv:
  return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)))


def _conv1x1(features: int) -> nn.Conv:
  return nn.Conv(features, (1, 1), padding='VALID')


class ResnetBlock2D(nn.Module):
  """diffusers `ResnetBlock2D` without a time embedding: (norm, act, conv) twice plus the shortcut (a 1x1
  conv when the channels change)."""

  in_channels: int
  out_channels: int
  groups: int
  act_fn: str

  def setup(self):
    self.norm1 = _group_norm(self.groups)
    self.conv1 = _conv3x3(self.out_channels)
    self.norm2 = _group_norm(self.groups)
    self.conv2 = _conv3x3(self.out_channels)
    if self.in_channels != self.out_channels:
      self.conv_shortcut = _conv1x1(self.out_channels)

  def __call__(self, x):
    act = ACTIVATIONS[self.act_fn]
    h = self.conv1(act(self.norm1(x)))
    h = self.conv2(act(self.norm2(h)))  # dropout 0 at inference
    shortcut = self.conv_shortcut(x) if self.in_channels != self.out_channels else x
    return shortcut + h


class Downsample2D(nn.Module):
  """diffusers `Downsample2D` with `padding=0`: zero-pad one row / column at the bottom / right only, then a
  stride-2 3x3 conv."""

  channels: int

  def setup(self):
    self.conv = nn.Conv(self.channels, (3, 3), strides=(2, 2), padding=((0, 1), (0, 1)))

  def __call__(self, x):
    return self.conv(x)


class Upsample2D(nn.Module):
  """diffusers `Upsample2D`: nearest-neighbour 2x (each pixel repeated), then a 3x3 conv."""

  channels: int

  def setup(self):
    self.conv = _conv3x3(self.channels)

  def __call__(self, x):
    return self.conv(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2))


class Attention(nn.Module):
  """diffusers' mid-block `Attention`: group norm, self-attention over the h * w positions, residual."""

  channels: int
  heads: int
  groups: int

  def setup(self):
    self.group_norm = _group_norm(self.groups)
    self.to_q = nn.Dense(self.channels)
    self.to_k = nn.Dense(self.channels)
    self.to_v = nn.Dense(self.channels)
    self.to_out = [nn.Dense(self.channels)]

  def __call__(self, x):
    b, h, w, c = x.shape
    tokens = self.group_norm(x).reshape(b, h * w, c)
    q, k, v = (f(tokens).reshape(b, h * w, self.heads, c // self.heads) for f in (self.to_q, self.to_k, self.to_v))
    scores = jnp.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(c // self.heads)
    weights = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(v.dtype)
    out = jnp.einsum('bhqk,bkhd->bqhd', weights, v).reshape(b, h * w, c)
    return x + self.to_out[0](out).reshape(b, h, w, c)


class UNetMidBlock2D(nn.Module):
  """diffusers `UNetMidBlock2D` (one layer): resnet, [attention], resnet, at constant channels."""

  channels: int
  groups: int
  act_fn: str
  add_attention: bool

  def setup(self):
    self.resnets = [ResnetBlock2D(self.channels, self.channels, self.groups, self.act_fn) for _ in range(2)]
    if self.add_attention:  # one head of all channels (attention_head_dim = channels)
      self.attentions = [Attention(self.channels, heads=1, groups=self.groups)]

  def __call__(self, x):
    x = self.resnets[0](x)
    if self.add_attention:
      x = self.attentions[0](x)
    return self.resnets[1](x)


class DownEncoderBlock2D(nn.Module):
  """diffusers `DownEncoderBlock2D`: `num_layers` resnets, then (but in the last block) a downsampler."""

  in_channels: int
  out_channels: int
  num_layers: int
  groups: int
  act_fn: str
  add_downsample: bool

  def setup(self):
    ins = [self.in_channels] + [self.out_channels] * (self.num_layers - 1)
    self.resnets = [ResnetBlock2D(i, self.out_channels, self.groups, self.act_fn) for i in ins]
    if self.add_downsample:
      self.downsamplers = [Downsample2D(self.out_channels)]

  def __call__(self, x):
    for resnet in self.resnets:
      x = resnet(x)
    return self.downsamplers[0](x) if self.add_downsample else x


class UpDecoderBlock2D(nn.Module):
  """diffusers `UpDecoderBlock2D`: `num_layers` resnets, then (but in the last block) an upsampler."""

  in_channels: int
  out_channels: int
  num_layers: int
  groups: int
  act_fn: str
  add_upsample: bool

  def setup(self):
    ins = [self.in_channels] + [self.out_channels] * (self.num_layers - 1)
    self.resnets = [ResnetBlock2D(i, self.out_channels, self.groups, self.act_fn) for i in ins]
    if self.add_upsample:
      self.upsamplers = [Upsample2D(self.out_channels)]

  def __call__(self, x):
    for resnet in self.resnets:
      x = resnet(x)
    return self.upsamplers[0](x) if self.add_upsample else x


class Encoder(nn.Module):
  """diffusers `Encoder` with `double_z=False`: images -> `latent_channels` maps, downsampled per block."""

  config: VQConfig

  def setup(self):
    c, channels = self.config, self.config.block_out_channels
    self.conv_in = _conv3x3(channels[0])
    self.down_blocks = [
      DownEncoderBlock2D(
        in_channels=channels[max(i - 1, 0)],
        out_channels=out,
        num_layers=c.layers_per_block,
        groups=c.norm_num_groups,
        act_fn=c.act_fn,
        add_downsample=i < len(channels) - 1,
      )
      for i, out in enumerate(channels)
    ]
    self.mid_block = UNetMidBlock2D(channels[-1], c.norm_num_groups, c.act_fn, c.mid_block_add_attention)
    self.conv_norm_out = _group_norm(c.norm_num_groups)
    self.conv_out = _conv3x3(c.latent_channels)

  def __call__(self, x):
    x = self.conv_in(x)
    for block in self.down_blocks:
      x = block(x)
    x = self.mid_block(x)
    return self.conv_out(nn.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
  """diffusers `Decoder` (group norm): latents -> images, upsampled per block, with one resnet more per block
  than the encoder."""

  config: VQConfig

  def setup(self):
    c, channels = self.config, self.config.block_out_channels[::-1]
    self.conv_in = _conv3x3(channels[0])
    self.mid_block = UNetMidBlock2D(channels[0], c.norm_num_groups, c.act_fn, c.mid_block_add_attention)
    self.up_blocks = [
      UpDecoderBlock2D(
        in_channels=channels[max(i - 1, 0)],
        out_channels=out,
        num_layers=c.layers_per_block + 1,
        groups=c.norm_num_groups,
        act_fn=c.act_fn,
        add_upsample=i < len(channels) - 1,
      )
      for i, out in enumerate(channels)
    ]
    self.conv_norm_out = _group_norm(c.norm_num_groups)
    self.conv_out = _conv3x3(c.out_channels)

  def __call__(self, x):
    x = self.mid_block(self.conv_in(x))
    for block in self.up_blocks:
      x = block(x)
    return self.conv_out(nn.silu(self.conv_norm_out(x)))


class VectorQuantizer(nn.Module):
  """diffusers `VectorQuantizer` at inference (`remap=None`; `legacy` and `beta` only weigh the training
  loss): the nearest codebook entry of each latent, and the entries of given indices."""

  num_embeddings: int
  embed_dim: int

  def setup(self):
    self.embedding = nn.Embed(self.num_embeddings, self.embed_dim)

  def codebook(self) -> jax.Array:
    return self.embedding.embedding

  def nearest(self, latents):
    """(B, h, w, C) -> (B, h * w) int32: the argmin of the squared l2 distance (torch.cdist's argmin), the
    first index on a tie; in float32 at full matmul precision, whatever the params' dtype."""
    z = latents.reshape(latents.shape[0], -1, self.embed_dim).astype(jnp.float32)
    codes = self.codebook().astype(jnp.float32)
    cross = jnp.einsum('bnc,kc->bnk', z, codes, precision=jax.lax.Precision.HIGHEST)
    distances = jnp.sum(z * z, axis=-1, keepdims=True) + jnp.sum(codes * codes, axis=-1) - 2 * cross
    return jnp.argmin(distances, axis=-1).astype(jnp.int32)

  def lookup(self, indices):
    """The codebook entries of `indices` (`get_codebook_entry` without a remap)."""
    return self.embedding(indices)


class VQModel(nn.Module):
  """diffusers `VQModel`: `encode_indices` (images -> tokens) and `decode_indices` (tokens -> images), plus
  `encode_latents` (the latents before quantisation) and `__call__` (the reconstruction, used by init)."""

  config: VQConfig

  def setup(self):
    c = self.config
    self.encoder = Encoder(c)
    self.quant_conv = _conv1x1(c.embed_dim)
    self.quantize = VectorQuantizer(c.num_vq_embeddings, c.embed_dim)
    self.post_quant_conv = _conv1x1(c.latent_channels)
    self.decoder = Decoder(c)

  @property
  def downsample_factor(self) -> int:
    return self.config.downsample_factor

  def _compute_dtype(self):
    return self.quantize.codebook().dtype

  def encode_latents(self, images):
    """(B, H, W, in_channels) images in [0, 1] -> (B, H / f, W / f, embed_dim) latents (diffusers `encode`)."""
    images = jnp.asarray(images)
    if images.ndim != 4 or images.shape[-1] != self.config.in_channels:
      raise ValueError(f'images must be (B, H, W, {self.config.in_channels}), got {images.shape}')
    return self.quant_conv(self.encoder(images.astype(self._compute_dtype())))

  def encode_indices(self, images):
    """(B, H, W, in_channels) images in [0, 1] -> (B, h * w) int32 codebook indices."""
    return self.quantize.nearest(self.encode_latents(images))

  def decode_indices(self, indices, grid: tuple[int, int]):
    """(B, h * w) int32 indices of a `grid = (h, w)` token grid -> (B, h * f, w * f, out_channels) images,
    unclipped: diffusers `decode(indices, force_not_quantize=True, shape=(B, h, w, C))`."""
    if not self.config.lookup_from_codebook:
      raise ValueError('decode_indices needs lookup_from_codebook=True (diffusers decodes the indices themselves)')
    indices = jnp.asarray(indices)
    h, w = grid
    if indices.ndim != 2 or indices.shape[1] != h * w:
      raise ValueError(f'indices must be (B, {h * w}) for a {h}x{w} grid, got {indices.shape}')
    return self._decode(indices, h, w)

  def _decode(self, indices, h: int, w: int):
    quantized = self.quantize.lookup(indices).reshape(indices.shape[0], h, w, self.config.embed_dim)
    return self.decoder(self.post_quant_conv(quantized))

  def __call__(self, images):
    """The reconstruction of `images` through the codebook (diffusers `forward`)."""
    latents = self.encode_latents(images)
    return self._decode(self.quantize.nearest(latents), latents.shape[1], latents.shape[2])


def init_shapes(config: VQConfig):
  """The param tree of `VQModel(config)` as ShapeDtypeStructs (float32), without computing anything."""
  model = VQModel(config)
  f = config.downsample_factor
  images = jax.ShapeDtypeStruct((1, f, f, config.in_channels), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x), images)['params']


def load_vqgan(directory: str, dtype=jnp.float32) -> tuple[VQConfig, dict]:
  """(config, variables) of a diffusers VQModel directory (`config.json` + `*.safetensors`; pickles are
  never loaded), for `VQModel(config).apply(variables, ...)`. Params are cast to `dtype` (the computation
  dtype). Raises FileNotFoundError without safetensors, ValueError naming every key that does not fit."""
  config_dict, tensors = read_safetensors(directory, 'VQModel')
  config = VQConfig.from_json_dict(config_dict)
  params = params_from_torch(tensors, init_shapes(config), f'VQModel weights in {directory}', dtype)
  return config, {'params': params}
