"""Model construction from a config: one place that knows how config fields map to modules.

`Models.masked_generator()` and `Models.token_selector()` hand our modules to the sampler as the pure
functions it takes (`tcts_jax.sampling.model`); params are the dict of `init_params`.
"""

import dataclasses
import functools
import pathlib
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

from tcts_jax.models import lora
from tcts_jax.models.generator import (
  Generator,
  generator_context,
  generator_head,
  generator_intermediates,
  generator_logits,
)
from tcts_jax.models.layers import ATTENTION_IMPLEMENTATIONS, attention_maps
from tcts_jax.models.selector import Selector
from tcts_jax.sampling.model import MaskedGenerator, TokenSelector
from tcts_jax.models.text import (
  TEXT_ENCODERS,
  ClipTextEncoder,
  ClipTokenizer,
  TextEncoder,
  WordTokenizer,
  load_clip_text,
  load_clip_text_params,
)
from tcts_jax.models.vqgan import VQTokenizer
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import resolve_path


@dataclasses.dataclass(frozen=True)
class Models:
  """The modules of a text-to-image MGM (flax modules are stateless: params live elsewhere)."""

  tokenizer: VQTokenizer
  text_tokenizer: Union[WordTokenizer, ClipTokenizer]  # config.text.encoder: 'learned' | 'clip'
  text_encoder: Union[TextEncoder, ClipTextEncoder]
  generator: Generator
  grid_size: int  # tokens per side
  selector: Optional[Selector] = None  # the TCTS selector, when the config has a `selector` section
  # Self-guidance (docs/design.md §15): the rank and scale of the generator's low-rank adapter (0: none), when
  # the config has a `self_guidance` section.
  self_guidance_rank: int = 0
  self_guidance_alpha: float = 1.0

  @property
  def num_tokens(self) -> int:
    return self.grid_size**2

  @property
  def mask_id(self) -> int:
    return self.generator.mask_id

  def encode_text(self, params, text_ids, negative_ids=None):
    """Text embeddings, padding mask and null-text flags for 2B rows: B conditional, then B unconditional
    (the learned null text, or the negative prompt when `negative_ids` is given)."""
    b = text_ids.shape[0]
    uncond_ids = text_ids if negative_ids is None else negative_ids
    text, text_mask = self.text_encoder.apply({'params': params['text']}, jnp.concatenate([text_ids, uncond_ids]))
    drop = jnp.concatenate([jnp.zeros(b, bool), jnp.full(b, negative_ids is None)])
    return text, text_mask, drop

  def decode_tokens(self, tokenizer_params, tokens, grid: Optional[int] = None):
    """(B, N) token ids of a `grid` x `grid` canvas (default the model's grid) -> (B, H, W, 3) images in [0, 1]
    (the decoder is convolutional: any grid decodes, at the tokenizer's pixels per token)."""
    return decode_token_grid(self.tokenizer, tokenizer_params, tokens, grid or self.grid_size)

  def masked_generator(self) -> MaskedGenerator:
    """The generator as the sampler takes it; its text state is the cross-attention context of every layer."""

    def encode_text(params, text_ids, negative_ids):
      return generator_context(self.generator, params['generator'], *self.encode_text(params, text_ids, negative_ids))

    def forward(method, params, tokens, context, attention_layer):
      if attention_layer is None:
        return self.generator.apply({'params': params['generator']}, tokens, context, method=method), None
      out, inter = generator_intermediates(self.generator, params['generator'], tokens, context, method)
      if isinstance(attention_layer, (tuple, list)):  # several layers of the same pass
        return out, tuple(attention_maps(inter, layer) for layer in attention_layer)
      return out, attention_maps(inter, attention_layer)

    def aux_logits(params, tokens, context):
      if 'self_guidance' not in params:
        raise ValueError(
          'self-guidance needs adapter weights, but none are loaded (no self_guidance.safetensors in the weights '
          'dir; train them with the self_guidance stage)'
        )
      return generator_logits(self.generator, self.self_guided_params(params), tokens, context)[0]

    return MaskedGenerator(
      num_tokens=self.num_tokens,
      codebook_size=self.generator.codebook_size,
      mask_id=self.mask_id,
      num_layers=self.generator.num_layers,
      encode_text=encode_text,
      logits=functools.partial(forward, 'logits'),
      features=functools.partial(forward, 'features'),
      head=lambda params, features: generator_head(self.generator, params['generator'], features),
      decode=lambda params, tokens: self.decode_tokens(params['tokenizer'], tokens),
      aux_logits=aux_logits if self.self_guidance_rank else None,
    )

  def self_guided_params(self, params) -> dict:
    """The auxiliary model's generator params: the frozen generator's with the self-guidance adapter merged."""
    return lora.merge(params['generator'], params['self_guidance'], self.self_guidance_alpha)

  def token_selector(self) -> Optional[TokenSelector]:
    """The TCTS selector as the sampler takes it (None without a selector config section)."""
    if self.selector is None:
      return None

    def selector_params(params):
      if 'selector' not in params:
        raise ValueError(
          'this strategy needs TCTS selector weights, but none are loaded (no selector.safetensors '
          'in the weights dir; train one with the selector stage)'
        )
      return params['selector']

    def encode_text(params, text_ids, negative_ids):
      text = self.encode_text(params, text_ids, negative_ids)
      return self.selector.apply({'params': selector_params(params)}, *text, method='context')

    def logits(params, tokens, ratio, context):
      return self.selector.apply({'params': selector_params(params)}, tokens, ratio, context, method='logits')

    return TokenSelector(encode_text=encode_text, logits=logits)


def images_to_model(images_uint8):
  """uint8 images -> the tokenizer's input range [-1, 1]."""
  return images_uint8.astype(jnp.float32) / 127.5 - 1.0


def decode_token_grid(tokenizer: VQTokenizer, tokenizer_params, tokens, grid: int):
  """(B, grid²) token ids -> (B, H, W, 3) images in [0, 1] through the VQ decoder."""
  images = tokenizer.apply({'params': tokenizer_params}, tokens.reshape(-1, grid, grid), method='decode')
  return model_to_images(images)


def model_to_images(x):
  """The tokenizer's output -> images in [0, 1]."""
  return jnp.clip((x + 1.0) / 2.0, 0.0, 1.0)


def image_tokens(models: Models, tokenizer_params, images_uint8):
  """(B, H, W, 3) uint8 images -> (B, N) codebook ids through the frozen tokenizer."""
  grid = models.tokenizer.apply({'params': tokenizer_params}, images_to_model(images_uint8), method='encode')
  return grid.reshape(grid.shape[0], -1)


def build_models(config, vocabulary: Sequence[str], clip_dir: Optional[str] = None) -> Models:
  """The modules of `config`. The text side is `config.text.encoder`'s: a word tokenizer over `vocabulary`
  and a learned encoder, or a CLIP tokenizer and frozen text tower read from `clip_dir` (default
  config.text.clip_dir; a weights dir holds its own copy, see `exported_clip_dir`)."""
  t, g = config.tokenizer, config.generator
  downsample = 2 ** len(t.channels)
  if config.data.image_size % downsample:
    raise ValueError(f'image_size {config.data.image_size} is not divisible by the tokenizer downsampling {downsample}')
  grid = config.data.image_size // downsample
  text_tokenizer, text_encoder = _build_text_side(config, vocabulary, clip_dir)
  width = text_encoder.width
  self_guidance = config.get('self_guidance') or {}
  return Models(
    tokenizer=VQTokenizer(tuple(t.channels), t.num_res_blocks, t.codebook_size, t.code_dim, t.commitment_cost),
    text_tokenizer=text_tokenizer,
    text_encoder=text_encoder,
    generator=Generator(
      t.codebook_size, grid * grid, g.width, g.num_layers, g.num_heads, width, g.mlp_ratio, _attention(g, 'generator')
    ),
    grid_size=grid,
    selector=_build_selector(config, grid * grid, width),
    self_guidance_rank=self_guidance.get('rank', 0),
    self_guidance_alpha=self_guidance.get('alpha', 1.0),
  )


def _build_text_side(config, vocabulary, clip_dir):
  x = config.text
  if frozen_text(config):
    return load_clip_text(clip_dir or x.clip_dir, x.max_length)
  if x.get('encoder', 'learned') != 'learned':
    raise ValueError(f'unknown text.encoder {x.encoder!r}; expected one of {TEXT_ENCODERS}')
  words = WordTokenizer.from_vocabulary(vocabulary, x.max_length)
  return words, TextEncoder(words.vocab_size, x.max_length, x.width, x.num_layers, x.num_heads)


def frozen_text(config) -> bool:
  """True when the text encoder is a pretrained one that no stage trains (text.encoder='clip')."""
  return config.text.get('encoder', 'learned') == 'clip'


def exported_clip_dir(weights_dir) -> pathlib.Path:
  """Where export copies the CLIP tokenizer files and config of a CLIP-conditioned model."""
  return pathlib.Path(weights_dir) / 'clip_text'


def load_text_params(config, source, expected) -> dict:
  """The text encoder's params: from `source` (a weights dir, or a generator workdir of the learned encoder),
  else, for a frozen CLIP encoder that a workdir does not hold, from config.text.clip_dir."""
  if frozen_text(config) and not (resolve_path(source) / 'text.safetensors').is_file():
    return load_clip_text_params(config.text.clip_dir)  # checked against its own config.json, which built `expected`
  return checkpoint.load_part(source, 'text', expected)


def _build_selector(config, num_tokens: int, text_width: int) -> Optional[Selector]:
  if 'selector' not in config:
    return None
  s = config.selector
  return Selector(
    config.tokenizer.codebook_size,
    num_tokens,
    s.width,
    s.num_layers,
    s.num_heads,
    text_width,
    s.mlp_ratio,
    _attention(s, 'selector'),
  )


def _attention(section, name: str) -> str:
  """Config section `name`'s `attention` (layers.ATTENTION_IMPLEMENTATIONS; configs older than it: 'heads_first')."""
  attention = section.get('attention', 'heads_first')
  if attention not in ATTENTION_IMPLEMENTATIONS:
    raise ValueError(f'{name}.attention must be one of {ATTENTION_IMPLEMENTATIONS}, got {attention!r}')
  return attention


def init_selector(models: Models, rng, text_width: int) -> dict:
  """Freshly initialised selector params (the text embeddings only matter through their width)."""
  tokens = jnp.zeros((1, models.num_tokens), jnp.int32)
  text = jnp.zeros((1, models.text_tokenizer.max_length, text_width))
  mask = jnp.ones(text.shape[:2], bool)
  return models.selector.init(rng, tokens, jnp.zeros(1), text, mask, jnp.zeros(1, bool))['params']


def init_self_guidance(models: Models, generator_params, rng) -> dict:
  """A fresh self-guidance adapter for `generator_params` (or their shapes): the auxiliary model starts equal
  to the generator."""
  return lora.init(rng, generator_params, models.self_guidance_rank)


def init_params(models: Models, image_size: int, rng) -> dict:
  """Freshly initialised params of every part: {'tokenizer', 'text', 'generator'} (+ 'selector' and
  'self_guidance' if built)."""
  r_tok, r_text, r_gen = jax.random.split(rng, 3)
  ids = jnp.zeros((1, models.text_tokenizer.max_length), jnp.int32)
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
  if models.self_guidance_rank:
    params['self_guidance'] = init_self_guidance(models, params['generator'], jax.random.fold_in(rng, 4))
  return params


def abstract_params(models: Models, image_size: int) -> dict:
  """Shapes and dtypes of `init_params`, without computing anything."""
  return jax.eval_shape(lambda: init_params(models, image_size, jax.random.key(0)))
