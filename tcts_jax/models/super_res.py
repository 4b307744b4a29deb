"""Muse's super-resolution stage (Chang et al. 2023, §2.3; docs/design.md §17): a second masked transformer on the
high-resolution token grid, conditioned on the low-resolution tokens and the text.

As in Muse, the low-resolution tokens pass through a few self-attention layers and the result is concatenated with
the text embeddings into one cross-attention context; the high-resolution transformer is our `Generator` reading
that context. Classifier-free guidance drops the text only (the low-resolution tokens are kept). The text encoder
and the low-resolution VQ are the base model's, frozen; the high-resolution VQ is a tokenizer of its own.

To the sampler the stage is an ordinary `MaskedGenerator` over the high-resolution grid whose "text ids" are the
caption ids followed by the low-resolution tokens, one int32 row per image (`pack_conditioning`).
"""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from tcts_jax.models import decode_token_grid
from tcts_jax.models.generator import Generator
from tcts_jax.models.layers import Context, TransformerBlock, attention_maps, with_null_text
from tcts_jax.models.text import TextEncoder, WordTokenizer
from tcts_jax.models.vqgan import VQTokenizer
from tcts_jax.sampling.model import MaskedGenerator


class SuperResGenerator(nn.Module):
  """High-resolution token logits from (tokens, text, low-resolution tokens); `context` once, `logits` per step."""

  generator: Generator  # over the high-resolution grid and codebook; its text width is the base text encoder's
  low_codebook_size: int
  low_num_tokens: int
  low_res_layers: int = 2

  def setup(self):
    width = self.generator.text_width
    self.null_text = self.param('null_text', nn.initializers.normal(0.02), (1, 1, width))
    self.low_embedding = nn.Embed(self.low_codebook_size, width)
    self.low_pos_embedding = self.param(
      'low_pos_embedding', nn.initializers.normal(0.02), (1, self.low_num_tokens, width)
    )
    self.low_blocks = [
      TransformerBlock(self.generator.num_heads, width, name=f'low_block_{i}') for i in range(self.low_res_layers)
    ]
    self.low_norm = nn.LayerNorm()

  def context(self, text, text_mask, drop_text, low_tokens) -> Context:
    text, text_mask = with_null_text(self.null_text, text, text_mask, drop_text)  # the text only
    low = self.low_embedding(low_tokens) + self.low_pos_embedding
    for block in self.low_blocks:
      low = block(low)
    conditioning = jnp.concatenate([text, self.low_norm(low).astype(text.dtype)], axis=1)
    mask = jnp.concatenate([text_mask, jnp.ones(low_tokens.shape, bool)], axis=1)
    return self.generator.context(conditioning, mask, jnp.zeros(text.shape[0], bool))

  def logits(self, tokens, context: Context, sow_attention=False):
    return self.generator.logits(tokens, context, sow_attention)

  def features(self, tokens, context: Context, sow_attention=False):
    return self.generator.features(tokens, context, sow_attention)

  def head(self, features):
    return self.generator.head(features)

  def __call__(self, tokens, text, text_mask, drop_text, low_tokens):
    return self.logits(tokens, self.context(text, text_mask, drop_text, low_tokens))


def pack_conditioning(text_ids, low_tokens):
  """(B, L) caption ids and (B, n) low-resolution tokens -> the (B, L + n) int32 'text ids' the sampler carries."""
  return jnp.concatenate([jnp.asarray(text_ids, jnp.int32), jnp.asarray(low_tokens, jnp.int32)], axis=1)


@dataclasses.dataclass(frozen=True)
class SuperResModels:
  """The modules of the super-resolution stage (params: {'super_res', 'tokenizer' (high-res), 'text' (base)})."""

  model: SuperResGenerator
  tokenizer: VQTokenizer  # the high-resolution VQ
  text_tokenizer: WordTokenizer  # the base model's
  text_encoder: TextEncoder  # the base model's, frozen
  grid_size: int  # high-resolution tokens per side

  @property
  def num_tokens(self) -> int:
    return self.grid_size**2

  def encode(self, params, ids, drop):
    """The context of `ids` = packed caption ids + low-resolution tokens (`pack_conditioning`)."""
    length = self.text_tokenizer.max_length
    text, text_mask = self.text_encoder.apply({'params': params['text']}, ids[:, :length])
    return self.model.apply({'params': params['super_res']}, text, text_mask, drop, ids[:, length:], method='context')

  def decode_tokens(self, tokenizer_params, tokens):
    return decode_token_grid(self.tokenizer, tokenizer_params, tokens, self.grid_size)

  def masked_generator(self) -> MaskedGenerator:
    """The stage as the sampler takes it; its text ids are `pack_conditioning`'s rows. Negative prompts are not
    supported (the unconditional rows are the null text with the same low-resolution tokens)."""

    def encode_text(params, ids, negative_ids):
      if negative_ids is not None:
        raise ValueError('the super-resolution stage takes no negative prompt')
      b = ids.shape[0]
      both = jnp.concatenate([ids, ids])
      return self.encode(params, both, jnp.concatenate([jnp.zeros(b, bool), jnp.ones(b, bool)]))

    def forward(method, params, tokens, context, attention_layer):
      apply = {'params': params['super_res']}
      if attention_layer is None:
        return self.model.apply(apply, tokens, context, method=method), None
      out, state = self.model.apply(apply, tokens, context, True, method=method, mutable=['intermediates'])
      inter = state['intermediates']['generator']
      if isinstance(attention_layer, (tuple, list)):
        return out, tuple(attention_maps(inter, layer) for layer in attention_layer)
      return out, attention_maps(inter, attention_layer)

    return MaskedGenerator(
      num_tokens=self.num_tokens,
      codebook_size=self.model.generator.codebook_size,
      mask_id=self.model.generator.mask_id,
      num_layers=self.model.generator.num_layers,
      encode_text=encode_text,
      logits=functools.partial(forward, 'logits'),
      features=functools.partial(forward, 'features'),
      head=lambda params, features: self.model.apply({'params': params['super_res']}, features, method='head'),
      decode=lambda params, tokens: self.decode_tokens(params['tokenizer'], tokens),
    )


def build_super_res(config, base_models) -> SuperResModels:
  """The super-resolution stage of `config` (its `super_res` section; data at the high resolution) on the base
  model's text side and low-resolution grid (`base_models`, a `models.Models`)."""
  t, s = config.tokenizer, config.super_res
  downsample = 2 ** len(t.channels)
  if config.data.image_size % downsample:
    raise ValueError(f'image_size {config.data.image_size} is not divisible by the tokenizer downsampling {downsample}')
  grid = config.data.image_size // downsample
  text_width = base_models.text_encoder.width
  generator = Generator(t.codebook_size, grid * grid, s.width, s.num_layers, s.num_heads, text_width, s.mlp_ratio)
  return SuperResModels(
    model=SuperResGenerator(generator, base_models.tokenizer.codebook_size, base_models.num_tokens, s.low_res_layers),
    tokenizer=VQTokenizer(tuple(t.channels), t.num_res_blocks, t.codebook_size, t.code_dim, t.commitment_cost),
    text_tokenizer=base_models.text_tokenizer,
    text_encoder=base_models.text_encoder,
    grid_size=grid,
  )


def init_params(models: SuperResModels, image_size: int, rng) -> dict:
  """Fresh params of the stage's own parts: {'tokenizer' (the high-resolution VQ at `image_size`), 'super_res'}
  (the text encoder's are the base model's)."""
  r_tok, r_model = jax.random.split(rng)
  length, width = models.text_tokenizer.max_length, models.text_encoder.width
  inputs = (
    jnp.zeros((1, models.num_tokens), jnp.int32),
    jnp.zeros((1, length, width)),
    jnp.ones((1, length), bool),
    jnp.zeros(1, bool),
    jnp.zeros((1, models.model.low_num_tokens), jnp.int32),
  )
  return {
    'tokenizer': models.tokenizer.init(r_tok, jnp.zeros((1, image_size, image_size, 3)))['params'],
    'super_res': models.model.init(r_model, *inputs)['params'],
  }


def abstract_params(models: SuperResModels, image_size: int) -> dict:
  """Shapes and dtypes of `init_params`, without computing anything."""
  return jax.eval_shape(lambda: init_params(models, image_size, jax.random.key(0)))
