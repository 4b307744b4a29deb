"""Model construction from a config: one place that knows how config fields map to modules."""

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from tcts_jax.models.generator import Generator
from tcts_jax.models.text import TextEncoder, WordTokenizer
from tcts_jax.models.vqgan import VQTokenizer


@dataclasses.dataclass(frozen=True)
class Models:
  """The modules of a text-to-image MGM (flax modules are stateless: params live elsewhere)."""
  tokenizer: VQTokenizer
  word_tokenizer: WordTokenizer
  text_encoder: TextEncoder
  generator: Generator
  grid_size: int  # tokens per side

  @property
  def num_tokens(self) -> int:
    return self.grid_size ** 2

  @property
  def mask_id(self) -> int:
    return self.generator.mask_id


def build_models(config, vocabulary: Sequence[str]) -> Models:
  t, x, g = config.tokenizer, config.text, config.generator
  downsample = 2 ** len(t.channels)
  if config.data.image_size % downsample:
    raise ValueError(f'image_size {config.data.image_size} is not divisible by the tokenizer downsampling {downsample}')
  grid = config.data.image_size // downsample
  words = WordTokenizer.from_vocabulary(vocabulary, x.max_length)
  return Models(
      tokenizer=VQTokenizer(tuple(t.channels), t.num_res_blocks, t.codebook_size, t.code_dim, t.commitment_cost),
      word_tokenizer=words,
      text_encoder=TextEncoder(words.vocab_size, x.max_length, x.width, x.num_layers, x.num_heads),
      generator=Generator(t.codebook_size, grid * grid, g.width, g.num_layers, g.num_heads, g.mlp_ratio),
      grid_size=grid,
  )


def init_params(models: Models, image_size: int, rng) -> dict:
  """Freshly initialised params of every part: {'tokenizer', 'text', 'generator'}."""
  r_tok, r_text, r_gen = jax.random.split(rng, 3)
  ids = jnp.zeros((1, models.word_tokenizer.max_length), jnp.int32)
  text_params = models.text_encoder.init(r_text, ids)['params']
  text, mask = models.text_encoder.apply({'params': text_params}, ids)
  tokens = jnp.zeros((1, models.num_tokens), jnp.int32)
  return {
      'tokenizer': models.tokenizer.init(r_tok, jnp.zeros((1, image_size, image_size, 3)))['params'],
      'text': text_params,
      'generator': models.generator.init(r_gen, tokens, text, mask, jnp.zeros(1, bool))['params'],
  }


def abstract_params(models: Models, image_size: int) -> dict:
  """Shapes and dtypes of `init_params`, without computing anything."""
  return jax.eval_shape(lambda: init_params(models, image_size, jax.random.key(0)))
