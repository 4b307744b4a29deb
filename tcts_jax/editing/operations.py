"""Refinement, mask-free editing and in/outpainting of existing images (paper §4.2–4.3, docs/design.md §5).

Every operation is the same three moves: choose positions (always through `gumbel_top_k`, the one
selection primitive), re-mask them, and regenerate them with the ordinary `Sampler` (one `lax.scan`)
started from that canvas with every other position `locked`, so a token that was not re-masked can never
change. Only the choice differs:

  refine_revision  R rounds, each re-masking the tokens the selector finds least aligned (or random ones)
  refine_masked    the 60% lowest-scoring tokens at once, regenerated with uniform sampling
  refine_upsampled refine_masked on a larger canvas, from tokens upsampled through the codebook (high resolution)
  edit             weights = generator cross-attention to one word of the NEW prompt x selector score
  inpaint          a given region (inpainting) or its complement (outpainting)

  from tcts_jax import editing
  t2i = TextToImage.load()
  tokens = t2i.tokenize_images(editing.load_image('in.png', 32).pixels[None])
  out = editing.edit(t2i, tokens, 'a large blue circle in the middle', 'blue', jax.random.key(0))
  out.images, out.tokens, out.remasked
"""

import dataclasses
import functools
from typing import Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.models import Models
from tcts_jax.models.selector import selector_forward
from tcts_jax.sampling.model import MaskedGenerator, TokenSelector, conditional_rows, guided_selector_logits
from tcts_jax.sampling.select import gumbel_top_k
from tcts_jax.utils.visualize import to_uint8

CHOOSERS = ('selector', 'random')


# ------------------------------------------------------------------------------ choosing positions


def choose(rng, remask_logits, count, noise=1.0):
  """(B, N) bool: `count` positions per row to re-mask, the largest `remask_logits + noise * Gumbel`.

  noise 0: exactly the top `count`; noise 1: drawn without replacement with probability proportional to
  exp(logits). Positions with logit -inf are never chosen: `count` is capped by how many are finite.
  """
  remask_logits = jnp.asarray(remask_logits, jnp.float32)
  allowed = remask_logits > -jnp.inf
  k = jnp.minimum(jnp.asarray(count), jnp.sum(allowed, axis=-1))
  # -inf + noise * g stays -inf, so capping k keeps the choice inside `allowed`; the & is belt and braces.
  return gumbel_top_k(rng, remask_logits, k, noise) & allowed


def edit_weights(attention, selector_logits=None, sharpness: float = 1.0):
  """Editing re-mask weights (paper §4.3, Fig. 6): attention^sharpness times the selector's probability
  that the token does not fit the new prompt, sigmoid(logit); the attention alone without a selector.
  A position with zero attention gets weight zero, so it is never re-masked."""
  w = jnp.maximum(jnp.asarray(attention, jnp.float32), 0.0) ** sharpness
  return w if selector_logits is None else w * jax.nn.sigmoid(selector_logits)


def annealed_noise(noise: float, round_index: int, rounds: int) -> float:
  """Gumbel noise of revision round r, annealed like the TCTS strategy: noise (1 - (r+1)/R); the last
  round takes the top scores."""
  return float(noise) * (1.0 - (round_index + 1) / rounds)


def count_for(fraction: float, num_tokens: int, name: str = 'fraction') -> int:
  """round(fraction N), at least 1; fraction must be in (0, 1]."""
  if not 0 < fraction <= 1:
    raise ValueError(f'{name} must be in (0, 1], got {fraction}')
  return max(1, int(round(fraction * num_tokens)))


# ------------------------------------------------------------------------- model pieces (jitted)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _selector_logits(selector: TokenSelector, params, tokens, text_ids, ratio, guidance: float):
  # The sampler's layout (conditional rows, then null-text rows), so the selector's own CFG works the same way.
  text = selector.encode_text(params, text_ids, None)
  return guided_selector_logits(selector, params, tokens, ratio, text, guidance)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _word_attention(model: MaskedGenerator, params, tokens, text_ids, words, layer: Optional[int]):
  text = conditional_rows(model.encode_text(params, text_ids, None), tokens.shape[0])
  layers = range(model.num_layers) if layer is None else [layer]
  maps = [jnp.mean(model.logits(params, tokens, text, i)[1]['cross_attention'], axis=1) for i in layers]  # (B, N, L)
  return jnp.sum(jnp.mean(jnp.stack(maps), axis=0) * words[:, None, :], axis=-1)


@functools.partial(jax.jit, static_argnums=(0, 5))
def _selector_cross_attention(models: Models, params, tokens, text_ids, ratio, layer: int):
  text, text_mask = models.text_encoder.apply({'params': params['text']}, text_ids)
  drop = jnp.zeros(tokens.shape[0], bool)
  logits, _, cross = selector_forward(models.selector, params['selector'], tokens, ratio, text, text_mask, drop, layer)
  return logits, jnp.mean(cross, axis=1)  # (B, N), (B, N, L) averaged over heads


def has_selector(t2i) -> bool:
  return t2i.selector is not None and 'selector' in t2i.params


def require_selector(t2i, what: str = "chooser 'selector'") -> None:
  if not has_selector(t2i):
    raise ValueError(
      f'{what} needs TCTS selector weights, but none are loaded (no selector.safetensors in '
      'the weights dir); use the random chooser (--chooser=random) or give --selector=DIR'
    )


def selector_logits(t2i, tokens, text_ids, ratio: float) -> np.ndarray:
  """(B, N) selector logits of `tokens` (high = does not fit the text), with the sampler's selector CFG.

  `ratio` is the masked-fraction input the selector was trained with; we pass the fraction about to be
  re-masked, so its prior on how many tokens are off matches the count we take.
  """
  require_selector(t2i)
  guidance = float(t2i.config.sampler.get('selector_guidance', 1.0))
  ratio = jnp.full((len(tokens),), ratio, jnp.float32)
  return np.asarray(
    _selector_logits(t2i.selector, t2i.params, jnp.asarray(tokens, jnp.int32), jnp.asarray(text_ids), ratio, guidance)
  )


def selector_cross_attention(t2i, tokens, text_ids, ratio: float, layer: int = -1):
  """The selector's view of `tokens` (paper Fig. 8): its conditional logits (B, N) and the cross-attention
  (B, N, L) from each image token to each text position in `layer` (negative: from the end), mean over heads."""
  require_selector(t2i)
  if not isinstance(t2i.models, Models):
    raise ValueError("the selector's cross-attention maps are read from our selector only")
  num_layers = t2i.models.selector.num_layers
  if not -num_layers <= layer < num_layers:
    raise ValueError(f'selector layer {layer} out of range [{-num_layers}, {num_layers})')
  ratio = jnp.full((len(tokens),), ratio, jnp.float32)
  logits, maps = _selector_cross_attention(
    t2i.models, t2i.params, jnp.asarray(tokens, jnp.int32), jnp.asarray(text_ids), ratio, layer % num_layers
  )
  return np.asarray(logits), np.asarray(maps)


def word_attention(t2i, tokens, text_ids, words, layer: Optional[int] = None) -> np.ndarray:
  """(B, N) generator cross-attention from each image token to the text positions `words` (B, L) bool,
  averaged over heads (and over layers when layer is None), from one forward on `tokens`."""
  num_layers = t2i.model.num_layers
  if layer is not None and not 0 <= layer < num_layers:
    raise ValueError(f'attention layer {layer} out of range [0, {num_layers})')
  return np.asarray(
    _word_attention(
      t2i.model,
      t2i.params,
      jnp.asarray(tokens, jnp.int32),
      jnp.asarray(text_ids),
      jnp.asarray(words, jnp.float32),
      layer,
    )
  )


# ------------------------------------------------------------------------------------ the glue


@dataclasses.dataclass
class EditResult:
  tokens: np.ndarray  # (B, N) int32 after
  images: np.ndarray  # (B, S, S, 3) uint8 after
  remasked: np.ndarray  # (B, N) bool: re-masked at least once; the only positions that can differ
  weights: Optional[np.ndarray]  # (B, N) what the (last) choice was weighted by; None when uniform/given
  notes: list[str] = dataclasses.field(default_factory=list)


def _check_tokens(t2i, tokens) -> np.ndarray:
  tokens = np.asarray(tokens)
  n, codebook = t2i.model.num_tokens, t2i.model.codebook_size
  if tokens.ndim != 2 or tokens.shape[1] != n:
    raise ValueError(f'expected tokens of shape (B, {n}), got {tokens.shape}')
  if tokens.size and (tokens.min() < 0 or tokens.max() >= codebook):
    raise ValueError(f'token ids must be in [0, {codebook}) (no [MASK]), got [{tokens.min()}, {tokens.max()}]')
  return tokens.astype(np.int32)


def _prompts(prompts, batch: int) -> list[str]:
  prompts = [prompts] if isinstance(prompts, str) else list(prompts)
  if len(prompts) == 1:
    prompts = prompts * batch
  if len(prompts) != batch:
    raise ValueError(f'give one prompt or one per image: {len(prompts)} prompts for {batch} images')
  return prompts


def _check_chooser(chooser: str) -> None:
  if chooser not in CHOOSERS:
    raise ValueError(f'unknown chooser {chooser!r}; expected one of {CHOOSERS}')


def regenerate(t2i, tokens, remask, text_ids, rng, **sampler_overrides):
  """Re-mask `remask` (B, N) of `tokens` and regenerate them with the sampler; every other position is
  locked, so it comes back unchanged. -> SampleOutput."""
  remask = np.asarray(remask, bool)
  init = np.where(remask, t2i.model.mask_id, tokens).astype(np.int32)
  sampler = t2i.sampler(**sampler_overrides)
  return sampler(t2i.params, text_ids, rng, init_tokens=init, locked=~remask)


def _refinement_inputs(t2i, tokens, prompts, chooser: str, fraction: float):
  """Checked (tokens, caption ids, re-mask count) of a refinement, before anything compiles."""
  _check_chooser(chooser)
  if chooser == 'selector':
    require_selector(t2i)
  tokens = _check_tokens(t2i, tokens)
  return tokens, t2i.encode_prompts(_prompts(prompts, len(tokens))), count_for(fraction, t2i.model.num_tokens)


def _remask_logits(t2i, tokens, text_ids, chooser: str, ratio: float):
  """Re-mask logits: sharpened selector logits (least aligned first), or zeros (uniform) for 'random'."""
  if chooser == 'random':
    return np.zeros(tokens.shape, np.float32), None
  scores = selector_logits(t2i, tokens, text_ids, ratio)
  return float(t2i.config.sampler.get('tcts_sharpness', 1.0)) * scores, scores


def refine_revision(
  t2i,
  tokens,
  prompts,
  rng,
  rounds: int = 4,
  fraction: float = 0.25,
  chooser: str = 'selector',
  noise: float = 1.0,
  strategy: str = 'uniform',
  steps: int = 4,
) -> EditResult:
  """Refinement (a), paper §4.2: `rounds` revision rounds, each re-masking round(fraction N) tokens and
  regenerating them (`strategy`, `steps`) with the rest locked.

  chooser 'selector': the tokens with the highest selector logits (least aligned), Gumbel noise `noise`
  annealed to 0 over the rounds; 'random': uniformly at random (the random-revoke baseline).
  """
  if rounds < 1:
    raise ValueError(f'rounds must be >= 1, got {rounds}')
  tokens, ids, count = _refinement_inputs(t2i, tokens, prompts, chooser, fraction)
  remasked, weights, images = np.zeros(tokens.shape, bool), None, None
  for r in range(rounds):  # a Python loop over rounds only; each round's sampling is one compiled scan
    rng, r_choose, r_sample = jax.random.split(rng, 3)
    logits, weights = _remask_logits(t2i, tokens, ids, chooser, fraction)
    round_noise = 1.0 if chooser == 'random' else annealed_noise(noise, r, rounds)
    remask = np.asarray(choose(r_choose, logits, count, round_noise))
    out = regenerate(t2i, tokens, remask, ids, r_sample, strategy=strategy, steps=steps)
    tokens, images, remasked = np.asarray(out.tokens), out.images, remasked | remask
  return EditResult(tokens, to_uint8(images), remasked, weights)


def refine_masked(
  t2i,
  tokens,
  prompts,
  rng,
  fraction: float = 0.6,
  chooser: str = 'selector',
  noise: float = 0.0,
  strategy: str = 'uniform',
  steps: int = 8,
) -> EditResult:
  """Refinement (b), paper §4.2: re-mask the round(fraction N) lowest-scoring tokens (highest selector
  logits; with `noise` 0 exactly those) or, with chooser 'random', as many random ones, and regenerate
  them with uniform sampling (the default `strategy`), the rest locked."""
  tokens, ids, count = _refinement_inputs(t2i, tokens, prompts, chooser, fraction)
  r_choose, r_sample = jax.random.split(rng)
  logits, weights = _remask_logits(t2i, tokens, ids, chooser, fraction)
  remask = np.asarray(choose(r_choose, logits, count, 1.0 if chooser == 'random' else noise))
  out = regenerate(t2i, tokens, remask, ids, r_sample, strategy=strategy, steps=steps)
  return EditResult(np.asarray(out.tokens), to_uint8(out.images), remask, weights)


def refine_upsampled(
  t2i,
  tokens,
  prompts,
  grid: int,
  rng,
  stride: Optional[int] = None,
  fraction: float = 0.6,
  chooser: str = 'selector',
  noise: float = 0.0,
  strategy: str = 'uniform',
  steps: int = 8,
) -> EditResult:
  """High resolution (b), paper §4.4 (docs/design.md §16.2): `tokens` of the trained grid upsampled to `grid` x
  `grid` through the codebook (`TextToImage.upsample_tokens`), then refinement (b) on that canvas in overlapping
  windows (`TextToImage.at_grid`): the selector's least aligned round(fraction N) tokens (or random ones)
  re-masked and regenerated, the rest locked."""
  canvas = t2i.at_grid(grid, stride)
  big = t2i.upsample_tokens(_check_tokens(t2i, tokens), grid)
  return refine_masked(canvas, big, prompts, rng, fraction, chooser, noise, strategy, steps)


def edit(
  t2i,
  tokens,
  prompts,
  word: Union[str, int],
  rng,
  noise: float = 0.25,
  steps: int = 10,
  strategy: str = 'uniform',
  layer: Optional[int] = None,
  sharpness: float = 4.0,
  use_selector: bool = True,
  attention=None,
) -> EditResult:
  """Mask-free editing (paper §4.3): re-mask up to round(noise N) tokens drawn with weights proportional to
  the generator's cross-attention to `word` in the NEW prompt (from a forward on the current tokens)
  times the selector's score map, and regenerate them under the new prompt; the rest stays.

  Without selector weights (or use_selector=False) the attention alone weights the choice (`notes` says
  so). `sharpness` 4 (the attention to the 4th power): on the shipped model a word's cross-attention is
  only a few times higher on its object than elsewhere, and with sharpness 1 a quarter of the re-masked
  tokens land on the background while part of the object stays (a half-recoloured object). `attention` (B, N) replaces the computed map (for tests and custom masks); positions of weight 0
  are never re-masked, so an all-zero map changes nothing.
  """
  tokens = _check_tokens(t2i, tokens)
  prompts = _prompts(prompts, len(tokens))
  if sharpness <= 0:
    raise ValueError(f'sharpness must be > 0, got {sharpness}')
  count = count_for(noise, t2i.model.num_tokens, 'noise')
  words = np.stack([t2i.word_mask(p, word) for p in prompts])
  ids = t2i.encode_prompts(prompts)
  notes = []
  if attention is None:
    attention = word_attention(t2i, tokens, ids, words, layer)
  scores = None
  if use_selector and has_selector(t2i):
    scores = selector_logits(t2i, tokens, ids, noise)
  elif use_selector:
    notes.append('no selector weights loaded: the re-mask weights are the cross-attention map alone')
  weights = edit_weights(attention, scores, sharpness)
  r_choose, r_sample = jax.random.split(rng)
  remask = np.asarray(choose(r_choose, jnp.log(weights), count, 1.0))
  out = regenerate(t2i, tokens, remask, ids, r_sample, strategy=strategy, steps=steps)
  return EditResult(np.asarray(out.tokens), to_uint8(out.images), remask, np.asarray(weights), notes)


def inpaint(
  t2i, tokens, prompts, region, rng, outpaint: bool = False, strategy: Optional[str] = None, steps: Optional[int] = None
) -> EditResult:
  """Muse-style inpainting: regenerate the tokens inside `region` ((N,) or (B, N) bool, e.g. from
  `rect_to_token_mask`) under the prompt and lock the rest; outpaint=True regenerates outside instead.
  The sampler settings default to the config's (strategy, steps)."""
  tokens = _check_tokens(t2i, tokens)
  ids = t2i.encode_prompts(_prompts(prompts, len(tokens)))
  region = np.asarray(region, bool)
  if region.shape not in ((tokens.shape[1],), tokens.shape):
    raise ValueError(f'region must have shape ({tokens.shape[1]},) or {tokens.shape}, got {region.shape}')
  remask = np.broadcast_to(~region if outpaint else region, tokens.shape)
  if not remask.any(axis=1).all():
    raise ValueError(
      'empty mask: the region covers the whole image, nothing is left to outpaint'
      if outpaint
      else 'empty mask: the region covers no token, nothing to inpaint'
    )
  overrides = {k: v for k, v in dict(strategy=strategy, steps=steps).items() if v is not None}
  out = regenerate(t2i, tokens, remask, ids, rng, **overrides)
  return EditResult(np.asarray(out.tokens), to_uint8(out.images), np.array(remask), None)
