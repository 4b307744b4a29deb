"""The masked generator: image tokens + text -> logits over the codebook at every position."""

import flax.linen as nn

from tcts_jax.models.layers import Context, TransformerBlock, sown_attention, text_context


class Generator(nn.Module):
  """Bidirectional transformer over image tokens with cross-attention to text.

  Token id `codebook_size` is [MASK]. Logits are produced at every position (masked and visible), so
  revocable samplers get a fresh prediction everywhere. `drop_text` (B,) replaces the text by a learned
  null embedding: the unconditional branch of classifier-free guidance.

  `context` (the text's cross-attention keys and values, once per text) and `logits` (per step) split
  `__call__` in two, so the sampler does the text side before its loop.
  """

  codebook_size: int
  num_tokens: int
  width: int
  num_layers: int
  num_heads: int
  text_width: int
  mlp_ratio: int = 4
  attention: str = 'heads_first'  # layers.ATTENTION_IMPLEMENTATIONS

  @property
  def mask_id(self) -> int:
    return self.codebook_size

  def setup(self):
    # Parameters are declared in the order (and under the names) of the checkpoints.
    self.null_text = self.param('null_text', nn.initializers.normal(0.02), (1, 1, self.text_width))
    self.token_embedding = nn.Embed(self.codebook_size + 1, self.width, name='Embed_0')
    self.pos_embedding = self.param('pos_embedding', nn.initializers.normal(0.02), (1, self.num_tokens, self.width))
    self.text_proj = nn.Dense(self.width)
    self.blocks = [
      TransformerBlock(
        self.num_heads, self.width, self.mlp_ratio, cross_attention=True, attention=self.attention, name=f'block_{i}'
      )
      for i in range(self.num_layers)
    ]
    self.final_norm = nn.LayerNorm(name='LayerNorm_0')
    self.head = nn.Dense(self.codebook_size)

  def context(self, text, text_mask, drop_text) -> Context:
    return text_context(self.null_text, self.text_proj, self.blocks, text, text_mask, drop_text)

  def features(self, tokens, context: Context, sow_attention=False):
    """Everything before the head: the normalised last hidden states (B, N, width)."""
    x = self.token_embedding(tokens) + self.pos_embedding
    for block, keys_values in zip(self.blocks, context.keys_values):
      x = block(x, context_keys_values=keys_values, context_mask=context.mask, sow_attention=sow_attention)
    return self.final_norm(x)

  def logits(self, tokens, context: Context, sow_attention=False):
    return self.head(self.features(tokens, context, sow_attention))

  def __call__(self, tokens, text, text_mask, drop_text, sow_attention=False):
    return self.logits(tokens, self.context(text, text_mask, drop_text), sow_attention)


def generator_context(generator: Generator, params, text, text_mask, drop_text) -> Context:
  return generator.apply({'params': params}, text, text_mask, drop_text, method='context')


def generator_logits(generator: Generator, params, tokens, context: Context, attention_layer=None):
  """Logits, plus the self- and cross-attention probabilities of `attention_layer` when it is given.

  The maps come from the same forward pass (sown by flax); unused layers are removed by XLA under jit.
  """
  if attention_layer is None:
    return generator.apply({'params': params}, tokens, context, method='logits'), None, None
  logits, inter = generator_intermediates(generator, params, tokens, context)
  return (
    logits,
    sown_attention(inter, attention_layer, 'self_attn'),
    sown_attention(inter, attention_layer, 'cross_attn'),
  )


def generator_intermediates(generator: Generator, params, tokens, context: Context, method: str = 'logits'):
  """Logits (or, with method='features', the features before the head) and the 'intermediates' holding every
  block's sown attention (`layers.attention_maps` reads them)."""
  out, state = generator.apply(
    {'params': params}, tokens, context, sow_attention=True, method=method, mutable=['intermediates']
  )
  return out, state['intermediates']


def generator_head(generator: Generator, params, features):
  """The head alone: features (..., width) -> logits (..., codebook_size); affine."""
  return generator.apply({'params': params}, features, method=lambda module, h: module.head(h))


def generator_forward(generator: Generator, params, tokens, text, text_mask, drop_text, attention_layer=None):
  """`generator_logits` from the text itself (context computed in the same call)."""
  context = generator_context(generator, params, text, text_mask, drop_text)
  return generator_logits(generator, params, tokens, context, attention_layer)
