"""aMUSEd's transformer, diffusers' ``UVit2DModel``, in Flax linen, loading diffusers safetensors.

Matches diffusers 0.42.1 ``UVit2DModel`` at inference (dropout off, the default attention processor: scale
``dim_head**-0.5``, no qk-norm, no mask) for every option of its config: biases on or off, down/upsampling
around the transformer layers, norms with or without elementwise affine, the SkipFF blocks' ``kv_mapper``
present only when ``hidden_size != block_out_channels``.

Layout conventions (JAX side):

- image tokens: ``(B, H, W)`` or ``(B, H*W)`` int32, row-major (token ``n`` is row ``n // W``, column ``n % W``);
- feature maps NHWC, token sequences ``(B, N, C)``;
- logits ``(B, H*W, codebook_size)``: channels last and token-major, where diffusers returns NCHW
  ``(B, codebook_size, H, W)`` (a config with ``downsample != upsample`` gives, as diffusers does, the logits of
  its output grid: half or twice the input's height and width);
- attention keys / values ``(B, heads, L, head_dim)``, attention maps ``(B, heads, queries, keys)``.

Params: every submodule carries the torch attribute name (lists are linen lists: ``transformer_layers_0``), so
``params_from_torch`` maps a diffusers state dict key by key; the upsampler's conv-transpose keeps torch's
``(in, out, 2, 2)`` layout in a leaf named ``weight``. The model computes in its params' dtype (load bfloat16
params for bfloat16 compute); RMSNorm statistics and attention softmaxes are float32.

Usage::

    config, params = load_uvit2d('path/to/amused/transformer')
    model, variables = UVit2D(config), {'params': params}
    context = model.apply(variables, text_states, pooled, micro_conds, method=UVit2D.context)  # once per prompt
    logits, maps = model.apply(variables, tokens, context, 5, method=UVit2D.logits)            # every step
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.utils.torch_params import params_from_torch, read_safetensors

__all__ = ['UVit2D', 'UVit2DConfig', 'example_inputs', 'lift_attention_maps', 'load_uvit2d', 'micro_cond_embedding']


@dataclasses.dataclass(frozen=True)
class UVit2DConfig:
  """The fields of diffusers' ``UVit2DModel.__init__`` (its ``config.json``), with its defaults."""

  hidden_size: int = 1024
  use_bias: bool = False
  hidden_dropout: float = 0.0
  cond_embed_dim: int = 768
  micro_cond_encode_dim: int = 256
  micro_cond_embed_dim: int = 1280
  encoder_hidden_size: int = 768
  vocab_size: int = 8256
  codebook_size: int = 8192
  in_channels: int = 768
  block_out_channels: int = 768
  num_res_blocks: int = 3
  downsample: bool = False
  upsample: bool = False
  block_num_heads: int = 12
  num_hidden_layers: int = 22
  num_attention_heads: int = 16
  attention_dropout: float = 0.0
  intermediate_size: int = 2816
  layer_norm_eps: float = 1e-6
  ln_elementwise_affine: bool = True
  sample_size: int = 64

  @classmethod
  def from_json_dict(cls, d: dict) -> UVit2DConfig:
    """From a diffusers ``config.json`` dict; ``_``-prefixed metadata is ignored, any other unknown key is an
    error (a config this port was not written for)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(k for k in d if not k.startswith('_') and k not in names)
    if unknown:
      raise ValueError(f'UVit2DModel config: unknown key(s) {", ".join(unknown)}')
    return cls(**{k: v for k, v in d.items() if k in names})

  @property
  def num_micro_conds(self) -> int:
    return self.micro_cond_embed_dim // self.micro_cond_encode_dim


# --------------------------------------------------------------------------------------- functions
def micro_cond_embedding(micro_conds: jax.Array, dim: int) -> jax.Array:
  """(B, M) -> (B, M * dim) float32: each value's sinusoidal embedding, [cos, sin] order (diffusers'
  ``get_timestep_embedding`` with ``flip_sin_to_cos=True, downscale_freq_shift=0``), concatenated."""
  b = micro_conds.shape[0]
  t = micro_conds.reshape(-1).astype(jnp.float32)
  half = dim // 2
  freqs = jnp.exp(-math.log(10000) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = t[:, None] * freqs[None, :]
  emb = jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb.reshape(b, -1)


def _coarse_cells(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """For each fine position of a (height, width) grid, row-major: the index of its 2x2 cell on the
  downsampled grid, and how many fine positions that cell holds (4, fewer on the edge of an odd grid)."""
  coarse_w = (width + 1) // 2
  rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
  cell = ((rows // 2) * coarse_w + cols // 2).reshape(-1)
  counts = np.bincount(cell, minlength=(height + 1) // 2 * coarse_w)
  return cell, counts[cell]


def lift_attention_maps(maps: dict, height: int, width: int) -> dict:
  """Maps of the downsampled grid -> maps of the (height, width) token grid.

  Self: ``A_fine[q, k] = A[c(q), c(k)] / |c(k)|`` (c = the 2x2 cell of a position, |c| = 4 on an even grid):
  rows still sum to one and (even grid) the attention a fine token receives equals its cell's. Cross (and its
  scores before the softmax, when present): ``A_fine[q, l] = A[c(q), l]``.
  """
  cell, size = _coarse_cells(height, width)
  lifted = {k: v[:, :, cell] for k, v in maps.items() if k != 'self_attention'}
  lifted['self_attention'] = maps['self_attention'][:, :, cell][:, :, :, cell] / size.astype(
    maps['self_attention'].dtype
  )
  return lifted


# --------------------------------------------------------------------------------------- layers
class RMSNorm(nn.Module):
  """diffusers' ``RMSNorm``: statistics in float32, optional elementwise scale (torch's ``weight``)."""

  dim: int
  eps: float
  elementwise_affine: bool = True

  def setup(self):
    if self.elementwise_affine:
      self.scale = self.param('scale', nn.initializers.ones, (self.dim,))

  def __call__(self, x):
    x32 = x.astype(jnp.float32)
    normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
    if not self.elementwise_affine:
      return normed.astype(x.dtype)
    return normed.astype(jnp.promote_types(x.dtype, self.scale.dtype)) * self.scale


def layer_norm(eps: float, elementwise_affine: bool, bias: bool) -> nn.LayerNorm:
  """torch ``nn.LayerNorm(dim, eps, elementwise_affine, bias)`` (exact variance, not E[x²] - E[x]²)."""
  return nn.LayerNorm(
    epsilon=eps, use_scale=elementwise_affine, use_bias=elementwise_affine and bias, use_fast_variance=False
  )


class GlobalResponseNorm(nn.Module):
  """ConvNeXt-v2 GRN over an NHWC map: each channel scaled by its spatial L2 norm over the channels' mean."""

  dim: int

  def setup(self):
    self.gamma = self.param('gamma', nn.initializers.zeros, (1, 1, 1, self.dim))
    self.beta = self.param('beta', nn.initializers.zeros, (1, 1, 1, self.dim))

  def __call__(self, x):
    gx = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(1, 2), keepdims=True))
    nx = (gx / (jnp.mean(gx, axis=-1, keepdims=True) + 1e-6)).astype(x.dtype)
    return self.gamma * (x * nx) + self.beta + x


class ConvTranspose2x2(nn.Module):
  """torch ``ConvTranspose2d(kernel_size=2, stride=2, padding=0)`` on NHWC: the 2x2 patches do not overlap, so
  each input pixel writes its own 2x2 output block (an einsum). ``weight`` keeps torch's (in, out, 2, 2)."""

  in_channels: int
  out_channels: int
  use_bias: bool

  def setup(self):
    init = nn.initializers.lecun_normal(in_axis=0, out_axis=1)
    self.weight = self.param('weight', init, (self.in_channels, self.out_channels, 2, 2))
    if self.use_bias:
      self.bias = self.param('bias', nn.initializers.zeros, (self.out_channels,))

  def __call__(self, x):
    b, h, w, _ = x.shape
    y = jnp.einsum('bhwc,copq->bhpwqo', x, self.weight).reshape(b, 2 * h, 2 * w, self.out_channels)
    return y + self.bias if self.use_bias else y


class Attention(nn.Module):
  """diffusers' ``Attention`` with ``AttnProcessor2_0``: self-attention, or cross-attention to precomputed
  (key, value). Returns (output, softmax probabilities (B, heads, N, L) in float32, the scores before the softmax
  in float32)."""

  query_dim: int
  heads: int
  dim_head: int
  bias: bool
  out_bias: bool

  def setup(self):
    inner = self.heads * self.dim_head
    self.to_q = nn.Dense(inner, use_bias=self.bias)
    self.to_k = nn.Dense(inner, use_bias=self.bias)
    self.to_v = nn.Dense(inner, use_bias=self.bias)
    self.to_out = [nn.Dense(self.query_dim, use_bias=self.out_bias), nn.Dropout(0.0, deterministic=True)]

  def split_heads(self, x):
    b, n, _ = x.shape
    return x.reshape(b, n, self.heads, self.dim_head).transpose(0, 2, 1, 3)

  def key_value(self, states) -> tuple[jax.Array, jax.Array]:
    """(B, L, C) -> key, value, each (B, heads, L, dim_head): what a cross-attention can compute once."""
    return self.split_heads(self.to_k(states)), self.split_heads(self.to_v(states))

  def __call__(self, x, key_value: tuple | None = None):
    b, n, _ = x.shape
    query = self.split_heads(self.to_q(x))
    key, value = self.key_value(x) if key_value is None else key_value
    scores = jnp.einsum('bhqd,bhkd->bhqk', query, key) * self.dim_head**-0.5
    probs = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)
    out = jnp.einsum('bhqk,bhkd->bhqd', probs.astype(value.dtype), value)
    out = out.transpose(0, 2, 1, 3).reshape(b, n, self.heads * self.dim_head)
    return self.to_out[1](self.to_out[0](out)), probs, scores.astype(jnp.float32)


class GEGLU(nn.Module):
  """One projection to 2 * dim_out, split in (hidden, gate): hidden * gelu(gate), exact erf GELU."""

  dim_out: int
  bias: bool

  def setup(self):
    self.proj = nn.Dense(2 * self.dim_out, use_bias=self.bias)

  def __call__(self, x):
    hidden, gate = jnp.split(self.proj(x), 2, axis=-1)
    return hidden * jax.nn.gelu(gate, approximate=False)


class FeedForward(nn.Module):
  """diffusers' ``FeedForward`` with its default ``geglu`` activation: net = [GEGLU, dropout, Linear]."""

  dim: int
  inner_dim: int
  bias: bool

  def setup(self):
    self.net = [
      GEGLU(self.inner_dim, self.bias),
      nn.Dropout(0.0, deterministic=True),
      nn.Dense(self.dim, use_bias=self.bias),
    ]

  def __call__(self, x):
    for layer in self.net:
      x = layer(x)
    return x


class AdaLayerNormContinuous(nn.Module):
  """norm(x) * (1 + scale) + shift, (scale, shift) = Linear(silu(cond)): the transformer layers' AdaLN."""

  dim: int
  elementwise_affine: bool
  eps: float
  bias: bool
  norm_type: str  # 'rms_norm' or 'layer_norm'

  def setup(self):
    self.linear = nn.Dense(2 * self.dim, use_bias=self.bias)
    if self.norm_type == 'rms_norm':
      self.norm = RMSNorm(self.dim, self.eps, self.elementwise_affine)
    else:
      self.norm = layer_norm(self.eps, self.elementwise_affine, self.bias)

  def __call__(self, x, cond):
    scale, shift = jnp.split(self.linear(nn.silu(cond).astype(x.dtype)), 2, axis=-1)
    return self.norm(x) * (1 + scale)[:, None, :] + shift[:, None, :]


class BasicTransformerBlock(nn.Module):
  """diffusers' ``BasicTransformerBlock`` as UVit2DModel builds it (``norm_type='ada_norm_continuous'``):
  AdaLN(RMS) -> self-attention, AdaLN(RMS) -> cross-attention, AdaLN(LayerNorm) -> GEGLU feed-forward, each
  residual. Returns (x, self-attention probs, cross-attention probs, cross-attention scores before the softmax)."""

  config: UVit2DConfig

  def setup(self):
    c = self.config
    dim, heads = c.hidden_size, c.num_attention_heads

    def norm(kind):
      return AdaLayerNormContinuous(dim, c.ln_elementwise_affine, c.layer_norm_eps, c.use_bias, kind)

    def attention():
      return Attention(dim, heads, dim // heads, c.use_bias, c.use_bias)

    self.norm1, self.attn1 = norm('rms_norm'), attention()
    self.norm2, self.attn2 = norm('rms_norm'), attention()
    self.norm3 = norm('layer_norm')
    self.ff = FeedForward(dim, c.intermediate_size, c.use_bias)

  def __call__(self, x, cond, cross_key_value):
    attn, self_probs, _ = self.attn1(self.norm1(x, cond))
    x = x + attn
    attn, cross_probs, cross_scores = self.attn2(self.norm2(x, cond), cross_key_value)
    x = x + attn
    x = x + self.ff(self.norm3(x, cond))
    return x, self_probs, cross_probs, cross_scores


class SkipFFTransformerBlock(nn.Module):
  """diffusers' ``SkipFFTransformerBlock``: two cross-attentions to the text (mapped by ``kv_mapper`` =
  Linear(silu(.)) when its width differs from the block's), each after an RMSNorm (eps 1e-6, always affine)."""

  dim: int
  heads: int
  kv_input_dim: int
  bias: bool

  def setup(self):
    self.kv_mapper = nn.Dense(self.dim, use_bias=self.bias) if self.kv_input_dim != self.dim else None
    self.norm1 = RMSNorm(self.dim, 1e-6)
    self.attn1 = Attention(self.dim, self.heads, self.dim // self.heads, self.bias, self.bias)
    self.norm2 = RMSNorm(self.dim, 1e-6)
    self.attn2 = Attention(self.dim, self.heads, self.dim // self.heads, self.bias, self.bias)

  def key_values(self, encoder_states) -> dict:
    """{'attn1': (key, value), 'attn2': (key, value)} of the (mapped) text states."""
    if self.kv_mapper is not None:
      encoder_states = self.kv_mapper(nn.silu(encoder_states))
    return {'attn1': self.attn1.key_value(encoder_states), 'attn2': self.attn2.key_value(encoder_states)}

  def __call__(self, x, key_values: dict):
    x = x + self.attn1(self.norm1(x), key_values['attn1'])[0]
    return x + self.attn2(self.norm2(x), key_values['attn2'])[0]


class ConvNextBlock(nn.Module):
  """Depthwise 3x3 conv -> RMSNorm -> Linear x4 -> GELU -> GRN -> Linear, residual, then FiLM by the
  conditioning embedding: x * (1 + scale) + shift."""

  config: UVit2DConfig
  res_ffn_factor: int = 4

  def setup(self):
    c = self.config
    channels, wide = c.block_out_channels, c.block_out_channels * self.res_ffn_factor
    self.depthwise = nn.Conv(channels, (3, 3), padding=1, feature_group_count=channels, use_bias=c.use_bias)
    self.norm = RMSNorm(channels, c.layer_norm_eps, c.ln_elementwise_affine)
    self.channelwise_linear_1 = nn.Dense(wide, use_bias=c.use_bias)
    self.channelwise_norm = GlobalResponseNorm(wide)
    self.channelwise_linear_2 = nn.Dense(channels, use_bias=c.use_bias)
    self.cond_embeds_mapper = nn.Dense(2 * channels, use_bias=c.use_bias)

  def __call__(self, x, cond):
    h = self.norm(self.depthwise(x))
    h = self.channelwise_norm(jax.nn.gelu(self.channelwise_linear_1(h), approximate=False))
    x = x + self.channelwise_linear_2(h)
    scale, shift = jnp.split(self.cond_embeds_mapper(nn.silu(cond)), 2, axis=-1)
    return x * (1 + scale)[:, None, None, :] + shift[:, None, None, :]


class Downsample2D(nn.Module):
  """RMSNorm, zero-pad one row and column at the bottom / right, 2x2 conv with stride 2."""

  config: UVit2DConfig

  def setup(self):
    c = self.config
    self.norm = RMSNorm(c.block_out_channels, c.layer_norm_eps, c.ln_elementwise_affine)
    self.conv = nn.Conv(c.block_out_channels, (2, 2), strides=(2, 2), padding='VALID', use_bias=c.use_bias)

  def __call__(self, x):
    return self.conv(jnp.pad(self.norm(x), ((0, 0), (0, 1), (0, 1), (0, 0))))


class Upsample2D(nn.Module):
  """RMSNorm, then the 2x2 stride-2 conv-transpose (twice the height and width)."""

  config: UVit2DConfig

  def setup(self):
    c = self.config
    self.norm = RMSNorm(c.block_out_channels, c.layer_norm_eps, c.ln_elementwise_affine)
    self.conv = ConvTranspose2x2(c.block_out_channels, c.block_out_channels, c.use_bias)

  def __call__(self, x):
    return self.conv(self.norm(x))


class UVitBlock(nn.Module):
  """[downsample], num_res_blocks x (ConvNextBlock, SkipFFTransformerBlock), [upsample], on NHWC maps.
  Cross-attention (key, value)s come in a dict keyed ``attention_blocks_{i}/attn{1,2}``."""

  config: UVit2DConfig
  with_downsample: bool
  with_upsample: bool

  def setup(self):
    c = self.config
    self.downsample = Downsample2D(c) if self.with_downsample else None
    self.res_blocks = [ConvNextBlock(c) for _ in range(c.num_res_blocks)]
    self.attention_blocks = [
      SkipFFTransformerBlock(c.block_out_channels, c.block_num_heads, c.hidden_size, c.use_bias)
      for _ in range(c.num_res_blocks)
    ]
    self.upsample = Upsample2D(c) if self.with_upsample else None

  def key_values(self, encoder_states) -> dict:
    return {
      f'attention_blocks_{i}/{attn}': kv
      for i, block in enumerate(self.attention_blocks)
      for attn, kv in block.key_values(encoder_states).items()
    }

  def __call__(self, x, cond, key_values: dict):
    if self.downsample is not None:
      x = self.downsample(x)
    for i, (res_block, attention_block) in enumerate(zip(self.res_blocks, self.attention_blocks)):
      x = res_block(x, cond)
      b, h, w, c = x.shape
      kv = {attn: key_values[f'attention_blocks_{i}/{attn}'] for attn in ('attn1', 'attn2')}
      x = attention_block(x.reshape(b, h * w, c), kv).reshape(b, h, w, c)
    if self.upsample is not None:
      x = self.upsample(x)
    return x


class UVit2DConvEmbed(nn.Module):
  """Token ids (B, H, W) -> embedding -> RMSNorm -> 1x1 conv: (B, H, W, block_out_channels)."""

  config: UVit2DConfig

  def setup(self):
    c = self.config
    self.embeddings = nn.Embed(c.vocab_size, c.in_channels)
    self.layer_norm = RMSNorm(c.in_channels, c.layer_norm_eps, c.ln_elementwise_affine)
    self.conv = nn.Conv(c.block_out_channels, (1, 1), use_bias=c.use_bias)

  def __call__(self, tokens):
    return self.conv(self.layer_norm(self.embeddings(tokens)))


class ConvMlmLayer(nn.Module):
  """1x1 conv -> RMSNorm -> 1x1 conv to the codebook: (B, H, W, codebook_size) logits."""

  config: UVit2DConfig

  def setup(self):
    c = self.config
    self.conv1 = nn.Conv(c.in_channels, (1, 1), use_bias=c.use_bias)
    self.layer_norm = RMSNorm(c.in_channels, c.layer_norm_eps, c.ln_elementwise_affine)
    self.conv2 = nn.Conv(c.codebook_size, (1, 1), use_bias=c.use_bias)

  def __call__(self, x):
    return self.head(self.features(x))

  def features(self, x):
    return self.layer_norm(self.conv1(x))

  def head(self, features):
    """The last 1x1 conv alone (affine): (..., H, W, in_channels) -> (..., H, W, codebook_size)."""
    return self.conv2(features)


class TimestepEmbedding(nn.Module):
  """Linear -> SiLU -> Linear (diffusers' ``TimestepEmbedding``, here the conditioning embedding)."""

  dim: int
  bias: bool

  def setup(self):
    self.linear_1 = nn.Dense(self.dim, use_bias=self.bias)
    self.linear_2 = nn.Dense(self.dim, use_bias=self.bias)

  def __call__(self, x):
    return self.linear_2(nn.silu(self.linear_1(x)))


# --------------------------------------------------------------------------------------- model
class UVit2D(nn.Module):
  """diffusers' ``UVit2DModel``: masked image tokens + text -> codebook logits, (B, H*W, codebook_size).

  Split in two for sampling: `context` (what depends on the text only: run once per prompt) and `logits`
  (every step; optionally with one transformer layer's attention maps). Computes in the params' dtype.
  """

  config: UVit2DConfig

  def setup(self):
    c = self.config
    self.encoder_proj = nn.Dense(c.hidden_size, use_bias=c.use_bias)
    self.encoder_proj_layer_norm = RMSNorm(c.hidden_size, c.layer_norm_eps, c.ln_elementwise_affine)
    self.embed = UVit2DConvEmbed(c)
    self.cond_embed = TimestepEmbedding(c.hidden_size, c.use_bias)
    self.down_block = UVitBlock(c, with_downsample=c.downsample, with_upsample=False)
    self.project_to_hidden_norm = RMSNorm(c.block_out_channels, c.layer_norm_eps, c.ln_elementwise_affine)
    self.project_to_hidden = nn.Dense(c.hidden_size, use_bias=c.use_bias)
    self.transformer_layers = [BasicTransformerBlock(c) for _ in range(c.num_hidden_layers)]
    self.project_from_hidden_norm = RMSNorm(c.hidden_size, c.layer_norm_eps, c.ln_elementwise_affine)
    self.project_from_hidden = nn.Dense(c.block_out_channels, use_bias=c.use_bias)
    self.up_block = UVitBlock(c, with_downsample=False, with_upsample=c.upsample)
    self.mlm_layer = ConvMlmLayer(c)

  @property
  def num_layers(self) -> int:
    """The number of transformer layers (valid `attention_layer`s are 0 .. num_layers - 1)."""
    return self.config.num_hidden_layers

  def _param_dtype(self):
    """The dtype the params were loaded in (the embedding table's): the compute dtype."""
    return self.embed.embeddings.embedding.dtype

  def __call__(self, tokens, encoder_hidden_states, pooled_text_emb, micro_conds):
    """tokens (B, H, W) int32, encoder_hidden_states (B, L, E), pooled_text_emb (B, P), micro_conds (B, M) ->
    logits (B, H*W, codebook_size)."""
    return self.logits(tokens, self.context(encoder_hidden_states, pooled_text_emb, micro_conds))[0]

  def context(self, encoder_hidden_states, pooled_text_emb, micro_conds) -> dict:
    """Everything that does not depend on the image tokens, batch first:

    - ``encoder_hidden_states`` (B, L, hidden_size): the text states after ``encoder_proj`` and its RMSNorm;
    - ``cond_embeds`` (B, hidden_size): ``cond_embed`` of [pooled text, micro-cond sinusoidal embedding];
    - ``{path}/key``, ``{path}/value`` (B, heads, L, head_dim) for every cross-attention, ``path`` its param
      path: ``transformer_layers_{i}/attn2`` and ``{down,up}_block/attention_blocks_{j}/attn{1,2}``.
    """
    dtype = self._param_dtype()
    states = self.encoder_proj_layer_norm(self.encoder_proj(encoder_hidden_states.astype(dtype)))
    micro = micro_cond_embedding(micro_conds, self.config.micro_cond_encode_dim)
    pooled = jnp.concatenate([pooled_text_emb.astype(jnp.float32), micro], axis=1).astype(dtype)
    context = {'encoder_hidden_states': states, 'cond_embeds': self.cond_embed(pooled).astype(states.dtype)}
    for path, (key, value) in self._cross_key_values(states).items():
      context[f'{path}/key'], context[f'{path}/value'] = key, value
    return context

  def _cross_key_values(self, states) -> dict:
    out = {}
    for block_name in ('down_block', 'up_block'):
      for path, kv in getattr(self, block_name).key_values(states).items():
        out[f'{block_name}/{path}'] = kv
    for i, layer in enumerate(self.transformer_layers):
      out[f'transformer_layers_{i}/attn2'] = layer.attn2.key_value(states)
    return out

  def logits(self, tokens, context: dict, attention_layer: int | tuple | None = None):
    """tokens (B, H, W) or (B, H*W) (a square grid) int32 and a `context` -> (logits (B, H*W, codebook_size),
    maps). ``maps`` is None without an `attention_layer`, else the softmax probabilities of that transformer
    layer's attentions, on the input token grid (lifted from the coarse grid when the model downsamples):
    ``{'self_attention': (B, heads, H*W, H*W), 'cross_attention': (B, heads, H*W, L)}``, and the cross-attention
    scores before the softmax, ``'cross_attention_logits'`` (B, heads, H*W, L); a tuple of layers gives a tuple
    of such dicts, from the same pass."""
    features, maps = self.features(tokens, context, attention_layer)
    return self.head(features), maps

  def head(self, features):
    """The MLM layer's last 1x1 conv (affine): features (B, N, in_channels) -> logits (B, N, codebook_size)."""
    return self.mlm_layer.head(features[:, :, None, :])[:, :, 0, :]

  def features(self, tokens, context: dict, attention_layer: int | tuple | None = None):
    """`logits` before the MLM layer's last (affine) conv: (features (B, H*W, in_channels), maps)."""
    several = isinstance(attention_layer, (tuple, list))
    layers = [self._layer_index(i) for i in attention_layer] if several else [self._layer_index(attention_layer)]
    grid = _token_grid(tokens)
    batch, height, width = grid.shape
    cond = context['cond_embeds']

    x = self.down_block(self.embed(grid), cond, _block_key_values(context, 'down_block'))
    b, h, w, channels = x.shape
    x = self.project_to_hidden(self.project_to_hidden_norm(x.reshape(b, h * w, channels)))
    by_layer = {}
    for i, layer in enumerate(self.transformer_layers):
      path = f'transformer_layers_{i}/attn2'
      x, self_probs, cross_probs, cross_scores = layer(x, cond, (context[f'{path}/key'], context[f'{path}/value']))
      if i in layers:
        maps = {'self_attention': self_probs, 'cross_attention': cross_probs, 'cross_attention_logits': cross_scores}
        by_layer[i] = maps if (h, w) == (height, width) else lift_attention_maps(maps, height, width)
    x = self.project_from_hidden(self.project_from_hidden_norm(x)).reshape(b, h, w, channels)
    x = self.up_block(x, cond, _block_key_values(context, 'up_block'))
    features = self.mlm_layer.features(x).reshape(batch, height * width, -1)
    if several:
      return features, tuple(by_layer[i] for i in layers)
    return features, by_layer.get(layers[0])

  def _layer_index(self, attention_layer: int | None) -> int | None:
    if attention_layer is None:
      return None
    n = self.num_layers
    if not isinstance(attention_layer, int) or not -n <= attention_layer < n:
      raise ValueError(f'attention_layer must be an int in [-{n}, {n}) (a transformer layer), got {attention_layer!r}')
    return attention_layer % n


def _token_grid(tokens) -> jax.Array:
  """(B, H, W) as is; (B, N) as a square (B, sqrt N, sqrt N) grid."""
  if tokens.ndim == 3:
    return tokens
  side = math.isqrt(tokens.shape[1]) if tokens.ndim == 2 else 0
  if side * side != tokens.shape[-1] or tokens.ndim != 2:
    raise ValueError(f'tokens must be (B, H, W) or (B, N) with N a square, got shape {tokens.shape}')
  return tokens.reshape(tokens.shape[0], side, side)


def _block_key_values(context: dict, block_name: str) -> dict:
  """The context's (key, value)s of one UVitBlock, keyed by their path inside it."""
  prefix = f'{block_name}/'
  return {
    name[len(prefix) : -len('/key')]: (value, context[name[: -len('key')] + 'value'])
    for name, value in context.items()
    if name.startswith(prefix) and name.endswith('/key')
  }


# --------------------------------------------------------------------------------------- loading
def example_inputs(config: UVit2DConfig, batch: int = 1, grid: int = 2, text_length: int = 1) -> tuple:
  """Zero inputs of the right shapes and dtypes for `UVit2D(config)` (init, eval_shape)."""
  return (
    jnp.zeros((batch, grid, grid), jnp.int32),
    jnp.zeros((batch, text_length, config.encoder_hidden_size), jnp.float32),
    jnp.zeros((batch, config.cond_embed_dim), jnp.float32),
    jnp.zeros((batch, config.num_micro_conds), jnp.float32),
  )


def load_uvit2d(directory: str, dtype=jnp.float32) -> tuple[UVit2DConfig, dict]:
  """(config, params) of a diffusers ``UVit2DModel`` directory (``config.json`` +
  ``diffusion_pytorch_model.safetensors``), params cast to `dtype`: the param tree, applied as
  ``UVit2D(config).apply({'params': params}, ...)``. Raises ValueError naming every missing, unused or wrongly
  shaped key."""
  config_dict, tensors = read_safetensors(directory, 'UVit2DModel')
  config = UVit2DConfig.from_json_dict(config_dict)
  expected = jax.eval_shape(UVit2D(config).init, jax.random.key(0), *example_inputs(config))['params']
  return config, params_from_torch(tensors, expected, f'UVit2DModel {directory}', dtype)
