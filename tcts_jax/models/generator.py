"""The masked generator: image tokens + text -> logits over the codebook at every position."""

import flax.linen as nn

from tcts_jax.models.layers import TransformerBlock, sown_attention, with_null_text


class Generator(nn.Module):
  """Bidirectional transformer over image tokens with cross-attention to text.

  Token id `codebook_size` is [MASK]. Logits are produced at every position (masked and visible), so
  revocable samplers get a fresh prediction everywhere. `drop_text` (B,) replaces the text by a learned
  null embedding: the unconditional branch of classifier-free guidance.
  """
  codebook_size: int
  num_tokens: int
  width: int
  num_layers: int
  num_heads: int
  mlp_ratio: int = 4

  @property
  def mask_id(self) -> int:
    return self.codebook_size

  @nn.compact
  def __call__(self, tokens, text, text_mask, drop_text, sow_attention=False):
    null = self.param('null_text', nn.initializers.normal(0.02), (1, 1, text.shape[-1]))
    text, text_mask = with_null_text(null, text, text_mask, drop_text)

    x = nn.Embed(self.codebook_size + 1, self.width)(tokens)
    x = x + self.param('pos_embedding', nn.initializers.normal(0.02), (1, self.num_tokens, self.width))
    context = nn.Dense(self.width, name='text_proj')(text)
    for i in range(self.num_layers):
      x = TransformerBlock(self.num_heads, self.mlp_ratio, cross_attention=True, name=f'block_{i}')(
          x, context=context, context_mask=text_mask, sow_attention=sow_attention)
    return nn.Dense(self.codebook_size, name='head')(nn.LayerNorm()(x))


def generator_forward(generator: Generator, params, tokens, text, text_mask, drop_text, attention_layer=None):
  """Logits, plus the self- and cross-attention probabilities of `attention_layer` when it is given.

  The maps come from the same forward pass (sown by flax); unused layers are removed by XLA under jit.
  """
  if attention_layer is None:
    return generator.apply({'params': params}, tokens, text, text_mask, drop_text), None, None
  logits, state = generator.apply({'params': params}, tokens, text, text_mask, drop_text,
                                  sow_attention=True, mutable=['intermediates'])
  inter = state['intermediates']
  return (logits, sown_attention(inter, attention_layer, 'self_attn'),
          sown_attention(inter, attention_layer, 'cross_attn'))
