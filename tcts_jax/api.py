"""Python API for notebooks and scripts.

from tcts_jax.api import TextToImage
t2i = TextToImage.load()                      # shipped weights, configs/shapes.py
out = t2i.generate(['a large red circle in the middle'], num_samples=4, strategy='random_revoke')
out.images  # (4, 32, 32, 3) uint8
"""

import dataclasses
import functools
import json
import pathlib
import warnings
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from tcts_jax.models import Models, abstract_params, build_models, exported_clip_dir, frozen_text, image_tokens
from tcts_jax.models import super_res
from tcts_jax.sampling.sampler import Sampler, program_key, sampler_config
from tcts_jax.sampling.windows import windowed_generator, windowed_selector
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import load_config, resolve_path
from tcts_jax.utils.visualize import to_uint8

__all__ = ['TextToImage', 'Generation', 'PromptTruncated', 'load_config', 'resolve_path']


class PromptTruncated(UserWarning):
  """A prompt had more words (or tokens) than the text encoder reads: the rest was cut."""


# Parts a weights dir may lack: without selector.safetensors the model loads, and only the strategies
# that need the selector (tcts, tcts_fas) refuse to run; without self_guidance.safetensors, self-guidance.
OPTIONAL_PARTS = ('selector', 'self_guidance')


def read_vocabulary(weights_dir) -> list[str]:
  path = pathlib.Path(weights_dir) / 'vocab.json'
  if not path.is_file():
    raise FileNotFoundError(f'no vocab.json in {weights_dir}')
  return json.loads(path.read_text())


# (B, S, S, 3) uint8 images -> (B, N) token ids, exactly as the generator and selector stages encode them.
tokens_from_images = jax.jit(image_tokens, static_argnums=0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def images_from_tokens(models: Models, tokenizer_params, tokens, grid: Optional[int] = None):
  return models.decode_tokens(tokenizer_params, tokens, grid)


@functools.partial(jax.jit, static_argnums=(0, 3))
def resized_tokens(models: Models, tokenizer_params, tokens, grid: int):
  """(B, N) tokens of the model's grid -> (B, grid²) through the VQ codebook (`VQTokenizer.resize`)."""
  g = models.grid_size
  resized = models.tokenizer.apply({'params': tokenizer_params}, tokens.reshape(-1, g, g), grid, method='resize')
  return resized.reshape(resized.shape[0], -1)


@dataclasses.dataclass
class Generation:
  prompts: list[str]  # one per image
  images: np.ndarray  # (B, H, W, 3) uint8
  tokens: np.ndarray  # (B, N) int32
  trajectory: Optional[dict]  # per step (T, B, ...) numpy arrays, when asked for
  diagnostics: Optional[dict] = None  # the sampler's per-step diagnostics (SampleOutput.diagnostics), when asked for


def warn_if_truncated(prompts, dropped, max_length: int, unit: str) -> None:
  """One PromptTruncated warning when prompts have more `unit`s than the text encoder reads (dropped > 0)."""
  long = [(d, p) for d, p in zip(dropped, prompts) if d > 0]
  if len(long) == 1:
    d, p = long[0]
    message = (
      f'the prompt "{p[:50]}..." has {max_length + d} {unit}, more than the {max_length} the '
      f'text encoder reads: its last {d} are dropped'
    )
  elif long:
    message = (
      f'{len(long)} of {len(prompts)} prompts have more than the {max_length} {unit} the text '
      f'encoder reads: their last {unit} are dropped (up to {max(dropped)})'
    )
  if long:
    warnings.warn(PromptTruncated(message), stacklevel=3)


class TextToImage:
  """A loaded model (config + modules + params) that turns prompts into images."""

  def __init__(self, config, models: Models, params):
    self.config, self.models, self.params = config, models, params
    # The model as the sampler sees it: pure functions (tcts_jax.sampling.model).
    self.model, self.selector = models.masked_generator(), models.token_selector()
    self._samplers, self._programs, self._canvases = {}, {}, {}

  @classmethod
  def load(
    cls,
    config: Optional[ml_collections.ConfigDict] = None,
    weights: Optional[str] = None,
    selector: Optional[str] = None,
  ) -> 'TextToImage':
    """`selector`: a selector workdir or weights dir overriding (or adding) the weights dir's selector."""
    config = config if config is not None else load_config()
    if config.get('model') == 'amused':
      return AmusedTextToImage.load(config, weights, selector)
    if not (weights or config.weights):
      raise ValueError('no weights: the config has no `weights` dir; give --weights=DIR (what export wrote)')
    weights_dir = resolve_path(weights or config.weights)
    if not weights_dir.is_dir():
      raise FileNotFoundError(f'weights directory not found: {weights_dir}')
    if frozen_text(config):  # the CLIP tokenizer and config export copied (the weights are text.safetensors)
      models = build_models(config, (), clip_dir=exported_clip_dir(weights_dir))
    else:
      models = build_models(config, read_vocabulary(weights_dir))
    expected = abstract_params(models, config.data.image_size)
    sources = {part: weights_dir for part in expected}
    if selector is not None and 'selector' in expected:
      sources['selector'] = resolve_path(selector)
    params = {}
    for part, src in sources.items():
      if part in OPTIONAL_PARTS and src == weights_dir and not (weights_dir / f'{part}.safetensors').is_file():
        continue  # e.g. no selector shipped: the strategies that need it say so when asked for
      params[part] = checkpoint.load_part(src, part, expected[part])
    return cls(config, models, jax.device_put(params))

  def encode_prompts(self, prompts: Sequence[str]) -> np.ndarray:
    """(B, L) text ids; a prompt longer than the text encoder reads is cut, with one PromptTruncated warning."""
    strict = self.config.text.unknown_words == 'error'
    for p in prompts:
      if not p.strip():
        raise ValueError('empty prompt')
    tokenizer = self.models.text_tokenizer
    warn_if_truncated(prompts, tokenizer.dropped(prompts), tokenizer.max_length, tokenizer.unit)
    return tokenizer.encode_batch(prompts, strict=strict)

  def word_mask(self, prompt: str, word) -> np.ndarray:
    """(L,) bool: the text positions of `word` (a word, or a word number) in the encoded `prompt`."""
    return self.models.text_tokenizer.word_mask(prompt, word)

  @property
  def grid_size(self) -> int:
    """Tokens per side of the canvas this model samples (the trained grid; larger for `at_grid`)."""
    return self.models.grid_size

  @property
  def image_size(self) -> int:
    """Pixels per side of the images it samples."""
    return self.config.data.image_size * self.grid_size // self.models.grid_size

  def at_grid(self, grid: int, stride: Optional[int] = None) -> 'TextToImage':
    """This model on a `grid` x `grid` token canvas (high resolution, docs/design.md §16): overlapping windows of
    the trained grid every `stride` tokens (default half a window), their predictions merged per position. The
    view shares the weights (and is kept, with its compiled samplers); `generate` samples at that size and the
    editing operations refine at it."""
    if (grid, stride) not in self._canvases:
      self._canvases[grid, stride] = CanvasView(self, grid, stride)
    return self._canvases[grid, stride]

  def upsample_tokens(self, tokens, grid: int) -> np.ndarray:
    """(B, N) tokens of the trained grid -> (B, grid²): the code embeddings resized bilinearly and re-quantised to
    the nearest code (the start of `editing.refine_upsampled`)."""
    tokens = np.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != self.models.num_tokens:
      raise ValueError(f'expected tokens of shape (B, {self.models.num_tokens}), got {tokens.shape}')
    if grid < self.models.grid_size:
      raise ValueError(f'grid {grid} is smaller than the model grid {self.models.grid_size}')
    return np.asarray(resized_tokens(self.models, self.params['tokenizer'], jnp.asarray(tokens, jnp.int32), grid))

  def tokenize_images(self, images) -> np.ndarray:
    """(B, S, S, 3) uint8 images at `image_size` -> (B, N) int32 VQ token ids."""
    images = np.asarray(images)
    size = self.image_size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
      raise ValueError(f'expected uint8 images of shape (B, {size}, {size}, 3), got {images.dtype} {images.shape}')
    return np.asarray(tokens_from_images(self.models, self.params['tokenizer'], images))

  def decode_tokens(self, tokens) -> np.ndarray:
    """(B, N) token ids -> (B, S, S, 3) uint8 images."""
    tokens = jnp.asarray(tokens, jnp.int32)
    return to_uint8(images_from_tokens(self.models, self.params['tokenizer'], tokens, self.grid_size))

  def sampler(self, trajectory: bool = False, diagnostics: bool = False, **overrides) -> Sampler:
    """The compiled sampler for these settings (built once and cached)."""
    cfg = sampler_config(self.config.sampler, **overrides)
    key = (cfg.to_json(), trajectory, diagnostics)
    if key not in self._samplers:
      self._samplers[key] = Sampler(self.model, cfg, self.selector, trajectory=trajectory, diagnostics=diagnostics)
    return self._samplers[key]

  def generate(
    self,
    prompts: Sequence[str],
    num_samples: int = 1,
    seed: int = 0,
    trajectory: bool = False,
    negative_prompt: Optional[str] = None,
    diagnostics: bool = False,
    **sampler_overrides,
  ) -> Generation:
    """`num_samples` images per prompt (images of one prompt are adjacent)."""
    if isinstance(prompts, str):
      prompts = [prompts]
    if num_samples < 1:
      raise ValueError(f'num_samples must be >= 1, got {num_samples}')
    expanded = [p for p in prompts for _ in range(num_samples)]
    ids = self.encode_prompts(expanded)
    negative = None if negative_prompt is None else np.repeat(self.encode_prompts([negative_prompt]), len(ids), 0)
    cfg = sampler_config(self.config.sampler, **sampler_overrides)
    # One compiled sampler per program_key: a new guidance scale (other than to or from 0), temperature or mask
    # schedule compiles nothing.
    key = (program_key(cfg), trajectory, diagnostics)
    if key not in self._programs:
      self._programs[key] = self.sampler(trajectory, diagnostics, **sampler_overrides)
    out = self._programs[key](self.params, ids, jax.random.key(seed), negative, settings=cfg)
    traj = jax.tree.map(np.asarray, out.trajectory) if trajectory else None
    diag = jax.tree.map(np.asarray, out.diagnostics) if diagnostics else None
    return Generation(expanded, to_uint8(out.images), np.asarray(out.tokens), traj, diag)


class CanvasView(TextToImage):
  """A loaded model on a larger token canvas (`TextToImage.at_grid`): its generator and selector read the canvas as
  overlapping windows of the trained grid (`sampling.windows`); everything else is the model's."""

  def __init__(self, base: TextToImage, grid: int, stride: Optional[int] = None):
    if not isinstance(base.models, Models):
      raise ValueError('high resolution runs on our models (e.g. configs/shapes.py), not on an external checkpoint')
    super().__init__(base.config, base.models, base.params)
    window = base.models.grid_size
    self._grid, self.stride = grid, window // 2 if stride is None else stride

    def decode(params, tokens):
      return base.models.decode_tokens(params['tokenizer'], tokens, grid)

    self.model = windowed_generator(self.model, grid, self.stride, decode)
    self.selector = None if self.selector is None else windowed_selector(self.selector, window, grid, self.stride)

  @property
  def grid_size(self) -> int:
    return self._grid


class SuperResolution:
  """Muse's two stages (docs/design.md §17): the base model samples its grid, then the super-resolution stage samples
  the high-resolution tokens conditioned on them and the caption.

  t2x = SuperResolution.load(load_config('configs/shapes.py:super_res'))
  gen = t2x.generate(['a large red circle in the middle'], num_samples=4)   # gen.images (4, 64, 64, 3)
  """

  def __init__(self, config, base: TextToImage, models, params):
    self.config, self.base, self.models, self.params = config, base, models, params
    self.model = models.masked_generator()
    self._samplers = {}

  @classmethod
  def load(cls, config, weights: Optional[str] = None, base: Optional[TextToImage] = None) -> 'SuperResolution':
    """`config`: a super_res config; `weights`: a dir (or workdir) with super_res and the high-resolution
    tokenizer (default config.weights); `base`: the loaded base model (default: super_res.base_config with its
    weights, or super_res.base_weights)."""
    base = base or TextToImage.load(load_config(config.super_res.base_config), config.super_res.base_weights)
    models = super_res.build_super_res(config, base.models)
    weights_dir = resolve_path(weights or config.weights)
    if not weights_dir.is_dir():
      raise FileNotFoundError(f'super-resolution weights not found: {weights_dir}')
    expected = super_res.abstract_params(models, config.data.image_size)
    params = {part: checkpoint.load_part(weights_dir, part, shape) for part, shape in expected.items()}
    params['text'] = base.params['text']
    return cls(config, base, models, jax.device_put(params))

  def generate(self, prompts: Sequence[str], num_samples: int = 1, seed: int = 0, base_settings=None, **overrides):
    """`num_samples` images per prompt at the high resolution: the base model's `generate` (with `base_settings`,
    a dict of its sampler settings), then this stage (its sampler settings: config.sampler at super_res.steps,
    with `overrides`) from the base tokens. `Generation.trajectory` holds the base images as 'base_images'."""
    low = self.base.generate(prompts, num_samples, seed, **(base_settings or {}))
    ids = super_res.pack_conditioning(self.base.encode_prompts(low.prompts), low.tokens)
    cfg = sampler_config(self.config.sampler, **{'steps': self.config.super_res.steps, **overrides})
    key = program_key(cfg)
    if key not in self._samplers:
      self._samplers[key] = Sampler(self.model, cfg)
    out = self._samplers[key](self.params, ids, jax.random.fold_in(jax.random.key(seed), 1), settings=cfg)
    return Generation(low.prompts, to_uint8(out.images), np.asarray(out.tokens), {'base_images': low.images})


class AmusedTextToImage(TextToImage):
  """An aMUSEd checkpoint (configs/amused.py; tcts_jax/models/amused/) behind the same API: `generate`,
  `sampler`, `encode_prompts`, `tokenize_images`, `decode_tokens`. `models` is the loaded `Amused`."""

  def __init__(self, config, models, params):
    super().__init__(config, models, params)
    # Compiled once per loaded model (a jax.jit made at every call would trace again each time).
    self._decode = jax.jit(self.model.decode)
    self._encode_images = jax.jit(models.image_codes)

  @classmethod
  def load(cls, config, weights=None, selector=None) -> 'AmusedTextToImage':
    from tcts_jax.models.amused import pipeline  # pylint: disable=import-outside-toplevel (only for aMUSEd)

    directory = weights or config.weights
    if not directory:
      raise ValueError('no aMUSEd weights: give --config.weights=DIR, a diffusers aMUSEd directory (configs/amused.py)')
    amused = pipeline.load_amused(directory, config.dtype, config.micro_conditioning)
    selector = selector or config.get('selector_weights')
    if selector:  # a selector trained on this checkpoint (configs/amused.py:*,selector)
      module = pipeline.build_selector(config.selector, amused)
      example = jax.eval_shape(
        lambda: module.init(jax.random.key(0), *pipeline.selector_example_inputs(amused))['params']
      )
      amused = amused.with_selector(module, checkpoint.load_part(resolve_path(selector), 'selector', example))
    return cls(config, amused, amused.params)

  def encode_prompts(self, prompts: Sequence[str]) -> np.ndarray:
    """(B, 77) CLIP ids, padded and cut as the pipeline does; a cut prompt warns (PromptTruncated)."""
    warn_if_truncated(prompts, self.models.tokens_dropped(prompts), self.models.max_length, 'tokens')
    return self.models.encode_prompts(prompts)

  def word_mask(self, prompt: str, word) -> np.ndarray:
    return self.models.word_mask(prompt, word)

  def tokenize_images(self, images) -> np.ndarray:
    images = np.asarray(images)
    size = self.models.image_size
    if images.ndim != 4 or images.shape[1:] != (size, size, 3) or images.dtype != np.uint8:
      raise ValueError(f'expected uint8 images of shape (B, {size}, {size}, 3), got {images.dtype} {images.shape}')
    return np.asarray(self._encode_images(self.params, images))

  def decode_tokens(self, tokens) -> np.ndarray:
    return to_uint8(self._decode(self.params, jnp.asarray(tokens, jnp.int32)))
