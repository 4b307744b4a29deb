"""Model construction from a config: one place that knows how config fields map to modules."""

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from tcts_jax.models.generator import Generator
from tcts_jax.models.selector import Selector
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
  selector: Optional[Selector] = None  # the TCTS selector, when the config has a `selector` section

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
      selector=_build_selector(config, grid * grid),
  )


def _build_selector(config, num_tokens: int) -> Optional[Selector]:
  if 'selector' not in config:
    return None
  s = config.selector
  return Selector(config.tokenizer.codebook_size, num_tokens, s.width, s.num_layers, s.num_heads, s.mlp_ratio)


def init_selector(models: Models, rng, text_width: int) -> dict:
  """Freshly initialised selector params (the text embeddings only matter through their width)."""
  tokens = jnp.zeros((1, models.num_tokens), jnp.int32)
  text = jnp.zeros((1, models.word_tokenizer.max_length, text_width))
  mask = jnp.ones(text.shape[:2], bool)
  return models.selector.init(rng, tokens, jnp.zeros(1), text, mask, jnp.zeros(1, bool))['params']


def init_params(models: Models, image_size: int, rng) -> dict:
  """Freshly initialised params of every part: {'tokenizer', 'text', 'generator'} (+ 'selector' if built)."""
  r_tok, r_text, r_gen = jax.random.split(rng, 3)
  ids = jnp.zeros((1, models.word_tokenizer.max_length), jnp.int32)
  text_params = models.text_encoder.init(r_text, ids)['params']
  text, mask = models.text_encoder.apply({'params': text_params}, ids)
  tokens = jnp.zeros((1, models.num_tokens), jnp.int32)
  params = {
      'tokenizer': models.tokenizer.init(r_tok, jnp.zeros((1, image_size, image_size, 3)))['params'],
      'text': text_params,
      'generator': models.generator.init(r_gen, tokens, text, mask, jnp.zeros(1, bool))['params'],
  }
  if models.selector is not None:
    # fold_in, not a 4th split: the other parts keep the values they had before the selector existed.
    params['selector'] = init_selector(models, jax.random.fold_in(rng, 3), text.shape[-1])
  return params


def abstract_params(models: Models, image_size: int) -> dict:
  """Shapes and dtypes of `init_params`, without computing anything."""
  return jax.eval_shape(lambda: init_params(models, image_size, jax.random.key(0)))
