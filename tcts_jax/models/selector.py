"""The TCTS selector (paper §3.2, docs/design.md §4): scores every sampled token for "does not fit".

Input: the token ids x̂ sampled at every position, the masked ratio of the generator input that produced
them, and per-token text embeddings (cross-attention). Output: one logit per position, the logit that the
token is NOT from real, text-aligned data. A learned null text (`drop_text`) gives it its own CFG.
"""

import flax.linen as nn
import jax.numpy as jnp

from tcts_jax.models.layers import Context, TransformerBlock, sown_attention, text_context


def sinusoidal_embedding(x, dim: int, max_period: float = 10_000.0):
  """(B,) values in [0, 1] -> (B, dim) sin/cos features (scaled by 1000 like diffusion timesteps)."""
  half = dim // 2
  freqs = jnp.exp(-jnp.log(max_period) * jnp.arange(half) / half)
  args = 1000.0 * x[:, None] * freqs[None]
  return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


class Selector(nn.Module):
  """Bidirectional transformer over sampled tokens with cross-attention to text -> (B, N) logits.

  Token id `codebook_size` ([MASK]) is accepted too, though the sampler always feeds a full x̂. `ratio`
  (B,) in [0, 1] is the masked fraction of the generator's input; it is embedded (sinusoidal -> MLP) and
  added to every token embedding. Like the generator, `context` (once per text) and `logits` split
  `__call__` in two.
  """

  codebook_size: int
  num_tokens: int
  width: int
  num_layers: int
  num_heads: int
  text_width: int
  mlp_ratio: int = 4
  attention: str = 'heads_first'  # layers.ATTENTION_IMPLEMENTATIONS

  def setup(self):
    # Parameters are declared in the order (and under the names) of the checkpoints.
    self.null_text = self.param('null_text', nn.initializers.normal(0.02), (1, 1, self.text_width))
    self.token_embedding = nn.Embed(self.codebook_size + 1, self.width, name='Embed_0')
    self.pos_embedding = self.param('pos_embedding', nn.initializers.normal(0.02), (1, self.num_tokens, self.width))
    self.ratio_in = nn.Dense(self.width)
    self.ratio_out = nn.Dense(self.width)
    self.text_proj = nn.Dense(self.width)
    self.blocks = [
      TransformerBlock(
        self.num_heads, self.width, self.mlp_ratio, cross_attention=True, attention=self.attention, name=f'block_{i}'
      )
      for i in range(self.num_layers)
    ]
    self.final_norm = nn.LayerNorm(name='LayerNorm_0')
    self.head = nn.Dense(1)

  def context(self, text, text_mask, drop_text) -> Context:
    return text_context(self.null_text, self.text_proj, self.blocks, text, text_mask, drop_text)

  def logits(self, tokens, ratio, context: Context, sow_attention=False):
    x = self.token_embedding(tokens) + self.pos_embedding
    ratio = jnp.broadcast_to(jnp.asarray(ratio, jnp.float32), tokens.shape[:1])
    r = self.ratio_in(sinusoidal_embedding(ratio, self.width).astype(x.dtype))  # bfloat16 compute stays bfloat16
    x = x + self.ratio_out(nn.silu(r))[:, None]
    for block, keys_values in zip(self.blocks, context.keys_values):
      x = block(x, context_keys_values=keys_values, context_mask=context.mask, sow_attention=sow_attention)
    return self.head(self.final_norm(x))[..., 0]

  def __call__(self, tokens, ratio, text, text_mask, drop_text, sow_attention=False):
    return self.logits(tokens, ratio, self.context(text, text_mask, drop_text), sow_attention)


def selector_forward(selector: Selector, params, tokens, ratio, text, text_mask, drop_text, attention_layer=None):
  """Logits (B, N), plus the self- and cross-attention probabilities of `attention_layer` when given."""
  if attention_layer is None:
    return selector.apply({'params': params}, tokens, ratio, text, text_mask, drop_text), None, None
  logits, state = selector.apply(
    {'params': params}, tokens, ratio, text, text_mask, drop_text, sow_attention=True, mutable=['intermediates']
  )
  inter = state['intermediates']
  return (
    logits,
    sown_attention(inter, attention_layer, 'self_attn'),
    sown_attention(inter, attention_layer, 'cross_attn'),
  )
