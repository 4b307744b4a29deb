"""The TCTS selector (paper §3.2, DESIGN §4): scores every sampled token for "does not fit".

Input: the token ids x̂ sampled at every position, the masked ratio of the generator input that produced
them, and per-token text embeddings (cross-attention). Output: one logit per position, the logit that the
token is NOT from real, text-aligned data. A learned null text (`drop_text`) gives it its own CFG.
"""

import flax.linen as nn
import jax.numpy as jnp

from tcts_jax.models.layers import TransformerBlock, sown_attention, with_null_text


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
  added to every token embedding.
  """
  codebook_size: int
  num_tokens: int
  width: int
  num_layers: int
  num_heads: int
  mlp_ratio: int = 4

  @nn.compact
  def __call__(self, tokens, ratio, text, text_mask, drop_text, sow_attention=False):
    null = self.param('null_text', nn.initializers.normal(0.02), (1, 1, text.shape[-1]))
    text, text_mask = with_null_text(null, text, text_mask, drop_text)

    x = nn.Embed(self.codebook_size + 1, self.width)(tokens)
    x = x + self.param('pos_embedding', nn.initializers.normal(0.02), (1, self.num_tokens, self.width))
    ratio = jnp.broadcast_to(jnp.asarray(ratio, jnp.float32), tokens.shape[:1])
    r = nn.Dense(self.width, name='ratio_in')(sinusoidal_embedding(ratio, self.width))
    x = x + nn.Dense(self.width, name='ratio_out')(nn.silu(r))[:, None]
    context = nn.Dense(self.width, name='text_proj')(text)
    for i in range(self.num_layers):
      x = TransformerBlock(self.num_heads, self.mlp_ratio, cross_attention=True, name=f'block_{i}')(
          x, context=context, context_mask=text_mask, sow_attention=sow_attention)
    return nn.Dense(1, name='head')(nn.LayerNorm()(x))[..., 0]


def selector_forward(selector: Selector, params, tokens, ratio, text, text_mask, drop_text, attention_layer=None):
  """Logits (B, N), plus the self- and cross-attention probabilities of `attention_layer` when given."""
  if attention_layer is None:
    return selector.apply({'params': params}, tokens, ratio, text, text_mask, drop_text), None, None
  logits, state = selector.apply({'params': params}, tokens, ratio, text, text_mask, drop_text,
                                 sow_attention=True, mutable=['intermediates'])
  inter = state['intermediates']
  return (logits, sown_attention(inter, attention_layer, 'self_attn'),
          sown_attention(inter, attention_layer, 'cross_attn'))


def guided_selector_logits(selector: Selector, params, x_hat, ratio, text, text_mask, drop_text, guidance: float):
  """Selector CFG `s_u + g (s_c - s_u)`, from ONE batched pass over the cond and uncond text.

  `text`, `text_mask`, `drop_text` hold 2B rows, conditional first (the layout of the sampler's generator
  batch). `guidance` is static: with g == 1 the result is the conditional score, so only that half runs.
  """
  b = x_hat.shape[0]
  ratio = jnp.broadcast_to(jnp.asarray(ratio, jnp.float32), (b,))
  if guidance == 1.0:
    return selector.apply({'params': params}, x_hat, ratio, text[:b], text_mask[:b], drop_text[:b])
  s = selector.apply({'params': params}, jnp.concatenate([x_hat, x_hat]), jnp.concatenate([ratio, ratio]),
                     text, text_mask, drop_text)
  cond, uncond = s[:b], s[b:]
  return uncond + guidance * (cond - uncond)
