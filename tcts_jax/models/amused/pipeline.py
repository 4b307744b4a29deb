"""A diffusers aMUSEd directory, loaded for our sampler: the parts of `AmusedPipeline` as pure functions.

`load_amused(directory)` reads `transformer/`, `vqvae/`, `text_encoder/` and `tokenizer/` (config files and
safetensors, never a pickle) and returns an `Amused`; `Amused.masked_generator()` is the model as the
sampler takes it (`tcts_jax.sampling.model.MaskedGenerator`):

- text state, computed once before the sampler's loop: the CLIP text tower's penultimate hidden states and
  projected pooled embedding (what the pipeline conditions on), for the prompts and for the negative prompt
  (the empty prompt unless one is given), then the transformer's `context` of them (projected text, the
  conditioning embedding with micro-conditioning, and the keys / values of every cross-attention);
- logits: the transformer over the token canvas (the [MASK] id is the pipeline's `mask_token_id`), with the
  self- and cross-attention maps of one transformer layer when asked (FAS, editing);
- decode: VQ codebook lookup and decoder, clipped to [0, 1] as the pipeline does.
"""

import dataclasses
import json
import os
import pathlib
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.models.amused.transformer import UVit2D, load_uvit2d
from tcts_jax.models.amused.vqgan import VQModel, load_vqgan
from tcts_jax.models.clip import CLIPTextTower, load_clip_from_safetensors
from tcts_jax.models.selector import Selector
from tcts_jax.models.text import ClipTokenizer
from tcts_jax.sampling.model import MaskedGenerator, TokenSelector
from tcts_jax.utils.config import resolve_path

PARTS = ('transformer', 'vqvae', 'text_encoder', 'tokenizer')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@dataclasses.dataclass(frozen=True, eq=False)
class Amused:
  """The modules of an aMUSEd checkpoint and its tokenizer; params live in `params` (a dict per part)."""

  transformer: UVit2D
  vqgan: VQModel
  text_tower: CLIPTextTower
  tokenizer: Any  # transformers.CLIPTokenizer
  params: dict
  grid_size: int  # tokens per side
  mask_id: int
  # (width, height, crop top, crop left, aesthetic score): the pipeline's micro-conditioning.
  micro_conds: tuple = (256, 256, 0, 0, 6)
  # A TCTS selector trained on this generator (training/external.py); its params are params['selector'].
  selector: Optional[Selector] = None

  @property
  def num_tokens(self) -> int:
    return self.grid_size**2

  @property
  def codebook_size(self) -> int:
    return self.transformer.config.codebook_size

  @property
  def image_size(self) -> int:
    return self.grid_size * self.vqgan.config.downsample_factor

  @property
  def max_length(self) -> int:
    return self.tokenizer.model_max_length

  @property
  def prompt_tokenizer(self) -> ClipTokenizer:
    return ClipTokenizer(self.tokenizer, self.max_length)

  def tokens_dropped(self, prompts) -> list[int]:
    """Per prompt, how many of its CLIP tokens fall beyond what the text encoder reads (0 for most)."""
    return self.prompt_tokenizer.dropped(prompts)

  def encode_prompts(self, prompts) -> np.ndarray:
    """(B, max_length) CLIP ids, padded and truncated as the pipeline does."""
    return self.prompt_tokenizer.encode_batch(prompts)

  def word_mask(self, prompt: str, word) -> np.ndarray:
    """(max_length,) bool: the CLIP token positions of `word` in `prompt` (ClipTokenizer.word_mask)."""
    return self.prompt_tokenizer.word_mask(prompt, word)

  @property
  def empty_ids(self) -> np.ndarray:
    """(1, max_length) ids of the empty prompt: the pipeline's default negative prompt."""
    return self.encode_prompts([''])

  def text_states(self, params, text_ids, negative_ids=None) -> dict:
    """CLIP outputs for 2B rows: the prompts, then the negative prompts (the empty prompt when None)."""
    negative = jnp.broadcast_to(jnp.asarray(self.empty_ids), text_ids.shape) if negative_ids is None else negative_ids
    ids = jnp.concatenate([text_ids, jnp.asarray(negative, text_ids.dtype)])
    return self.text_tower.apply({'params': params['text_encoder']}, ids, hidden_states=True)

  def with_selector(self, selector: Selector, selector_params=None) -> 'Amused':
    params = self.params if selector_params is None else {**self.params, 'selector': selector_params}
    return dataclasses.replace(self, selector=selector, params=params)

  def masked_generator(self) -> MaskedGenerator:
    def encode_text(params, text_ids, negative_ids):
      b = text_ids.shape[0]
      text = self.text_states(params, text_ids, negative_ids)
      micro = jnp.broadcast_to(jnp.asarray(self.micro_conds, jnp.float32), (2 * b, len(self.micro_conds)))
      return self.transformer.apply(
        {'params': params['transformer']}, text['penultimate'], text['text_embeds'], micro, method='context'
      )

    def logits(params, tokens, context, attention_layer):
      return self.transformer.apply(
        {'params': params['transformer']}, tokens, context, attention_layer, method='logits'
      )

    def features(params, tokens, context, attention_layer):
      return self.transformer.apply(
        {'params': params['transformer']}, tokens, context, attention_layer, method='features'
      )

    def head(params, features):
      return self.transformer.apply({'params': params['transformer']}, features, method='head')

    def decode(params, tokens):
      images = self.vqgan.apply(
        {'params': params['vqvae']}, tokens, (self.grid_size, self.grid_size), method='decode_indices'
      )
      return jnp.clip(images.astype(jnp.float32), 0.0, 1.0)

    return MaskedGenerator(
      num_tokens=self.num_tokens,
      codebook_size=self.codebook_size,
      mask_id=self.mask_id,
      num_layers=self.transformer.config.num_hidden_layers,
      encode_text=encode_text,
      logits=logits,
      features=features,
      head=head,
      decode=decode,
    )

  def token_selector(self) -> Optional[TokenSelector]:
    """The TCTS selector as the sampler takes it, reading CLIP's penultimate states of the prompt (and of the
    negative prompt for selector guidance); None without one (the tcts* strategies then say so)."""
    if self.selector is None:
      return None

    def encode_text(params, text_ids, negative_ids):
      text = self.text_states(params, text_ids, negative_ids)['penultimate']
      return self.selector.apply({'params': selector_params(params)}, *selector_inputs(text), method='context')

    def logits(params, tokens, ratio, context):
      return self.selector.apply({'params': selector_params(params)}, tokens, ratio, context, method='logits')

    return TokenSelector(encode_text=encode_text, logits=logits)

  def image_codes(self, params, images_uint8):
    """(B, S, S, 3) uint8 images at the checkpoint's size -> (B, N) VQ ids (jittable)."""
    images = jnp.asarray(images_uint8, jnp.float32) / 255.0
    return self.vqgan.apply({'params': params['vqvae']}, images, method='encode_indices')


def selector_inputs(text):
  """The selector's text inputs from CLIP states: every position attended (as the transformer attends to all
  77), never its learned null text (its unconditional rows read the empty prompt, as aMUSEd's do)."""
  return text, jnp.ones(text.shape[:2], bool), jnp.zeros(text.shape[:1], bool)


def build_selector(selector_config, amused: Amused) -> Selector:
  """The TCTS selector module for an aMUSEd checkpoint: its token grid and codebook, CLIP's width; sizes from
  `selector_config` (width, num_layers, num_heads, mlp_ratio)."""
  s = selector_config
  width = amused.text_tower.config.hidden_size
  return Selector(amused.codebook_size, amused.num_tokens, s.width, s.num_layers, s.num_heads, width, s.mlp_ratio)


def selector_example_inputs(amused: Amused) -> tuple:
  """Zero inputs of the selector (one row) for `init` / `jax.eval_shape`."""
  text = jnp.zeros((1, amused.max_length, amused.text_tower.config.hidden_size))
  return jnp.zeros((1, amused.num_tokens), jnp.int32), jnp.zeros(1), *selector_inputs(text)


def selector_params(params):
  if 'selector' not in params:
    raise ValueError(
      'this strategy needs TCTS selector weights: give --config.selector_weights=DIR (a selector workdir)'
    )
  return params['selector']


def _check_directory(directory: pathlib.Path) -> None:
  if not directory.is_dir():
    raise FileNotFoundError(f'aMUSEd directory not found: {directory}')
  missing = [p for p in PARTS if not (directory / p).is_dir()]
  if missing:
    raise FileNotFoundError(
      f'{directory} is not a diffusers aMUSEd checkpoint: no {", ".join(f"{p}/" for p in missing)} '
      '(get one with `huggingface-cli download amused/amused-256 --local-dir DIR`)'
    )


def _mask_id(directory: pathlib.Path, transformer_config) -> int:
  """The scheduler's mask_token_id (amused: vocab_size - 1 = 8255), or the last transformer id without one."""
  path = directory / 'scheduler' / 'scheduler_config.json'
  if path.is_file():
    mask_id = int(json.loads(path.read_text())['mask_token_id'])
  else:
    mask_id = transformer_config.vocab_size - 1
  if not transformer_config.codebook_size <= mask_id < transformer_config.vocab_size:
    raise ValueError(
      f'mask_token_id {mask_id} is not an id the transformer embeds outside its codebook '
      f'[{transformer_config.codebook_size}, {transformer_config.vocab_size})'
    )
  return mask_id


def load_amused(directory, dtype: str = 'float32', micro_conditioning=None) -> Amused:
  """An `Amused` from a diffusers aMUSEd directory on local disk (nothing is downloaded).

  dtype: 'float32' or 'bfloat16' (params and activations). micro_conditioning: a mapping with `size`
  (width, height), `crop_coord` and `aesthetic_score` (default: the checkpoint's image size, (0, 0), 6).
  """
  from transformers import CLIPTokenizer

  if dtype not in DTYPES:
    raise ValueError(f'dtype must be one of {tuple(DTYPES)}, got {dtype!r}')
  directory = resolve_path(os.path.expanduser(str(directory)))  # from the cwd, else the repo root
  _check_directory(directory)
  transformer_config, transformer_params = load_uvit2d(str(directory / 'transformer'), DTYPES[dtype])
  vq_config, vq_variables = load_vqgan(str(directory / 'vqvae'), DTYPES[dtype])
  clip_config, text_params, _ = load_clip_from_safetensors(str(directory / 'text_encoder'))
  if clip_config.text is None:
    raise ValueError(f'{directory / "text_encoder"} holds no CLIP text tower')
  tokenizer_dir = directory / 'tokenizer'
  if not ((tokenizer_dir / 'tokenizer.json').is_file() or (tokenizer_dir / 'vocab.json').is_file()):
    raise FileNotFoundError(f'no CLIP tokenizer in {tokenizer_dir} (neither tokenizer.json nor vocab.json)')
  tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
  if tokenizer.model_max_length > clip_config.text.max_position_embeddings:
    tokenizer.model_max_length = clip_config.text.max_position_embeddings
  grid = transformer_config.sample_size
  image_size = grid * vq_config.downsample_factor
  micro = dict(size=(image_size, image_size), crop_coord=(0, 0), aesthetic_score=6)
  micro.update(dict(micro_conditioning.items()) if micro_conditioning else {})
  params = dict(
    transformer=transformer_params,
    vqvae=vq_variables['params'],
    text_encoder=jax.tree.map(lambda a: a.astype(DTYPES[dtype]), text_params),
  )
  return Amused(
    transformer=UVit2D(transformer_config),
    vqgan=VQModel(vq_config),
    text_tower=CLIPTextTower(clip_config.text),
    tokenizer=tokenizer,
    params=jax.device_put(params),
    grid_size=grid,
    mask_id=_mask_id(directory, transformer_config),
    micro_conds=(*micro['size'], *micro['crop_coord'], micro['aesthetic_score']),
  )
