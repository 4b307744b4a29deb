"""Transformer building blocks shared by the text encoder, the generator and the selector.

`Attention` has the parameters and numerics of `nn.MultiHeadDotProductAttention` (query / key / value /
out `DenseGeneral`, flax's `dot_product_attention`), but its keys and values can be computed apart from
its queries: the sampler projects the text once, before its loop, instead of at every step.
"""

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp


def heads_first_scores(spec: str, query, key):
  """flax's '...qhd,...khd->...hqk' as a matmul of (..., heads, q, d) by (..., heads, d, k) operands.

  Same products and sums as the einsum (equal results in tests/test_models.py; inside a whole compiled program
  XLA may round some differently), but XLA's CPU batched matmul runs the heads-first layout ~2x faster once the
  batch has several images of 256 tokens (benchmarks/batch_throughput.py).
  """
  assert spec == '...qhd,...khd->...hqk', spec
  return jnp.swapaxes(query, -3, -2) @ jnp.moveaxis(key, -3, -1)


def heads_first_weighted_sum(spec: str, weights, value):
  """flax's '...hqk,...khd->...qhd' as a matmul of (..., heads, q, k) by (..., heads, k, d) operands. The weights
  are cast to the values' dtype: flax's force_fp32_for_softmax leaves them float32, which under bfloat16
  compute would turn this matmul and everything after it float32."""
  assert spec == '...hqk,...khd->...qhd', spec
  return jnp.swapaxes(weights.astype(value.dtype) @ jnp.swapaxes(value, -3, -2), -3, -2)


# The einsums `Attention` hands to flax's dot_product_attention; benchmarks/batch_throughput.py sets both to None
# (flax's own einsums) to measure the difference in one run.
ATTENTION_EINSUMS = (heads_first_scores, heads_first_weighted_sum)
# How a layer that returns no attention maps computes attention (config `generator.attention`, `selector.attention`):
# flax's softmax attention on the heads-first matmuls above (the fastest on CPU), or `jax.nn.dot_product_attention`
# with XLA's attention ('xla') or cuDNN's fused flash attention ('cudnn': NVIDIA GPUs, bf16/fp16 only). A layer
# asked for its maps (FAS, editing) always takes the first, which materialises them.
ATTENTION_IMPLEMENTATIONS = ('heads_first', 'xla', 'cudnn')


class MlpBlock(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x):
    y = nn.gelu(nn.Dense(self.hidden)(x))
    return nn.Dense(x.shape[-1])(y)


class Attention(nn.Module):
  """Multi-head dot-product attention over `width` features, keys and values given or projected here.

  With `sow_weights=True` the softmax probabilities (B, heads, queries, keys) are sown into the
  'intermediates' collection as `attention_weights`, and the scaled scores before the softmax as
  `attention_logits` (-inf where the mask forbids; the authors' cross-attention FAS map reads their sigmoid).
  """

  num_heads: int
  width: int
  implementation: str = 'heads_first'  # one of ATTENTION_IMPLEMENTATIONS

  def setup(self):
    head_features = (self.num_heads, self.width // self.num_heads)
    self.query = nn.DenseGeneral(head_features, axis=-1)
    self.key = nn.DenseGeneral(head_features, axis=-1)
    self.value = nn.DenseGeneral(head_features, axis=-1)
    self.out = nn.DenseGeneral(self.width, axis=(-2, -1))

  def keys_values(self, inputs):
    return self.key(inputs), self.value(inputs)

  def __call__(self, x, keys_values=None, mask=None, sow_weights=False):
    """Self-attention over `x`, or attention to precomputed `keys_values` (from `self.keys_values`)."""
    keys, values = self.keys_values(x) if keys_values is None else keys_values
    query = self.query(x)
    if self.implementation != 'heads_first' and not sow_weights:
      mask = None if mask is None else mask.astype(bool)
      return self.out(jax.nn.dot_product_attention(query, keys, values, mask=mask, implementation=self.implementation))
    scores_einsum, weighted_sum_einsum = ATTENTION_EINSUMS
    if sow_weights:  # the scores flax's dot_product_attention computes inside; unused ones vanish under jit
      spec, scaled = '...qhd,...khd->...hqk', query / jnp.sqrt(query.shape[-1]).astype(query.dtype)
      scores = scores_einsum(spec, scaled, keys) if scores_einsum else jnp.einsum(spec, scaled, keys)
      self.sow('intermediates', 'attention_logits', scores if mask is None else jnp.where(mask, scores, -jnp.inf))
    y = nn.dot_product_attention(
      query,
      keys,
      values,
      mask=mask,
      module=self if sow_weights else None,
      qk_attn_weights_einsum=scores_einsum,
      attn_weights_value_einsum=weighted_sum_einsum,
      force_fp32_for_softmax=True,  # bfloat16 compute (train.compute_dtype): the softmax stays float32
    )
    return self.out(y)


@flax.struct.dataclass
class Context:
  """What a cross-attending transformer derives from its text alone, computed once per text.

  keys_values: per block, the cross-attention (keys, values), each (B, L, heads, head_dim).
  mask: (B, 1, 1, L) bool, True where a query may attend to the text slot.
  """

  keys_values: tuple
  mask: jnp.ndarray


class TransformerBlock(nn.Module):
  """Pre-LN block: self-attention -> (optional) cross-attention to a `Context` -> MLP.

  With `sow_attention=True` the attention probabilities of both attention layers are sown into the
  'intermediates' collection as `self_attn/attention_weights` and `cross_attn/attention_weights`
  (shape (B, heads, queries, keys)); they come from this very forward pass.
  """

  num_heads: int
  width: int
  mlp_ratio: int = 4
  cross_attention: bool = False
  attention: str = 'heads_first'  # Attention.implementation

  def setup(self):
    # Submodule names are the parameter names of the checkpoints: LayerNorm_<i> in order of use.
    self.self_attn = Attention(self.num_heads, self.width, self.attention)
    num_norms = 3 if self.cross_attention else 2
    self.norms = [nn.LayerNorm(name=f'LayerNorm_{i}') for i in range(num_norms)]
    if self.cross_attention:
      self.cross_attn = Attention(self.num_heads, self.width, self.attention)
    self.mlp = MlpBlock(self.mlp_ratio * self.width, name='MlpBlock_0')

  def context_keys_values(self, context):
    """Cross-attention keys and values of a projected text `context` (B, L, width)."""
    return self.cross_attn.keys_values(context)

  def __call__(self, x, self_mask=None, context_keys_values=None, context_mask=None, sow_attention=False):
    x = x + self.self_attn(self.norms[0](x), mask=self_mask, sow_weights=sow_attention)
    if self.cross_attention:
      x = x + self.cross_attn(self.norms[1](x), context_keys_values, mask=context_mask, sow_weights=sow_attention)
    return x + self.mlp(self.norms[-1](x))


def sown_attention(intermediates, layer: int, kind: str = 'self_attn', what: str = 'attention_weights'):
  """Attention probabilities (or with what='attention_logits' the scores before the softmax) (B, heads, Nq, Nk)
  of block `layer` from an `intermediates` collection."""
  return intermediates[f'block_{layer}'][kind][what][0]


def attention_maps(intermediates, layer: int) -> dict:
  """The sampler protocol's attention maps of block `layer` (docs/design.md §8)."""
  return dict(
    self_attention=sown_attention(intermediates, layer, 'self_attn'),
    cross_attention=sown_attention(intermediates, layer, 'cross_attn'),
    cross_attention_logits=sown_attention(intermediates, layer, 'cross_attn', 'attention_logits'),
  )


def with_null_text(null, text, text_mask, drop_text):
  """Replace the text of rows with `drop_text` (B,) by a learned null embedding `null` (1, 1, D).

  A dropped row attends only to its first slot (the null token), so the caption cannot leak through.
  """
  drop = drop_text[:, None]
  text = jnp.where(drop[..., None], jnp.broadcast_to(null, text.shape), text)
  only_first = jnp.arange(text.shape[1]) == 0
  return text, jnp.where(drop, only_first[None], text_mask)


def text_context(null, text_proj, blocks, text, text_mask, drop_text) -> Context:
  """The `Context` of cross-attending `blocks`: null text for dropped rows, projection, keys and values."""
  text, text_mask = with_null_text(null, text, text_mask, drop_text)
  projected = text_proj(text)
  return Context(tuple(block.context_keys_values(projected) for block in blocks), text_mask[:, None, None, :])
