"""Transformer building blocks shared by the text encoder, the generator and (later) the selector."""

import flax.linen as nn
import jax.numpy as jnp


class MlpBlock(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x):
    y = nn.gelu(nn.Dense(self.hidden)(x))
    return nn.Dense(x.shape[-1])(y)


class TransformerBlock(nn.Module):
  """Pre-LN block: self-attention -> (optional) cross-attention -> MLP.

  With `sow_attention=True` the softmax attention probabilities of both attention layers are sown into
  the 'intermediates' collection as `self_attn/attention_weights` and `cross_attn/attention_weights`
  (shape (B, heads, queries, keys)); they come from this very forward pass.
  """
  num_heads: int
  mlp_ratio: int = 4
  cross_attention: bool = False

  @nn.compact
  def __call__(self, x, self_mask=None, context=None, context_mask=None, sow_attention=False):
    attn = lambda name: nn.MultiHeadDotProductAttention(num_heads=self.num_heads, name=name)
    h = nn.LayerNorm()(x)
    x = x + attn('self_attn')(h, mask=self_mask, sow_weights=sow_attention)
    if self.cross_attention:
      h = nn.LayerNorm()(x)
      cross_mask = nn.make_attention_mask(jnp.ones(x.shape[:2], bool), context_mask)
      x = x + attn('cross_attn')(h, context, mask=cross_mask, sow_weights=sow_attention)
    h = nn.LayerNorm()(x)
    return x + MlpBlock(self.mlp_ratio * x.shape[-1])(h)


def sown_attention(intermediates, layer: int, kind: str = 'self_attn'):
  """Attention probabilities (B, heads, Nq, Nk) of block `layer` from an `intermediates` collection."""
  return intermediates[f'block_{layer}'][kind]['attention_weights'][0]


def with_null_text(null, text, text_mask, drop_text):
  """Replace the text of rows with `drop_text` (B,) by a learned null embedding `null` (1, 1, D).

  A dropped row attends only to its first slot (the null token), so the caption cannot leak through.
  """
  drop = drop_text[:, None]
  text = jnp.where(drop[..., None], jnp.broadcast_to(null, text.shape), text)
  only_first = jnp.arange(text.shape[1]) == 0
  return text, jnp.where(drop, only_first[None], text_mask)
