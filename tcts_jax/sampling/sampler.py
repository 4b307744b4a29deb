"""The sampler: every step (generator with CFG, token draw, strategy, selection) in ONE `lax.scan`.

All per-step quantities (k_t, guidance scale, temperature, noise scale, strategy index) are NumPy
arrays built from the config before tracing, so the step count is static, nothing in the loop depends
on Python control flow over traced values, and a new prompt or seed reuses the compiled program.

The model comes in as functions (`sampling.model`): the text side is encoded once, before the scan;
each step calls the generator's `logits` (and the selector's, for TCTS). Nothing here imports a model.
"""

import dataclasses
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.sampling import schedules
from tcts_jax.sampling import strategies as strat
from tcts_jax.sampling.model import MaskedGenerator, TokenSelector, guided_selector_logits
from tcts_jax.sampling.select import gumbel_top_k, sample_categorical


@flax.struct.dataclass
class SampleOutput:
  tokens: jnp.ndarray  # (B, N) final token ids
  images: Optional[jnp.ndarray]  # (B, H, W, 3) float in [0, 1]; None if not decoded
  # Per step (T, B, ...): x̂ `tokens` and their decoded `images`, the `kept` mask after the step, the
  # FAS `high_freq` map, and `selector_logits` (guided TCTS scores of x̂) when a strategy uses the
  # selector. None unless the sampler was built with trajectory=True.
  trajectory: Optional[dict] = None


def sampler_config(base, **overrides):
  """A copy of the sampler config `base` (references resolved) with `overrides`; unknown keys are an error."""
  cfg = base.copy_and_resolve_references()
  with cfg.unlocked():
    for key, value in overrides.items():
      if key not in cfg:
        raise ValueError(f'unknown sampler setting {key!r}')
      cfg[key] = value
  return cfg


def strategy_per_step(cfg) -> list[str]:
  """The strategy name used at each step: one name, a preset, or 'name:steps,name:steps,...'."""
  spec, steps = cfg.strategy, cfg.steps
  if spec in strat.PRESETS:
    first, second = strat.PRESETS[spec]
    return [first] * (steps // 2) + [second] * (steps - steps // 2)
  if ':' in spec or ',' in spec:
    names = []
    for part in spec.split(','):
      name, _, count = part.partition(':')
      if not count.strip().isdigit():
        raise ValueError(f'bad strategy schedule part {part!r}; expected name:steps')
      names += [name.strip()] * int(count)
    if len(names) != steps:
      raise ValueError(f'strategy schedule {spec!r} covers {len(names)} steps, but steps={steps}')
    return names
  return [spec] * steps


def _truncate(logits, top_k: int, top_p: float):
  """Top-k / nucleus truncation of the logits (static settings; 0 and 1.0 switch them off)."""
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
    # Smallest logit still inside the nucleus (the first token is always inside).
    cutoff_idx = jnp.sum(cum - jax.nn.softmax(sorted_logits, axis=-1) < top_p, axis=-1, keepdims=True) - 1
    cutoff = jnp.take_along_axis(sorted_logits, cutoff_idx, axis=-1)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return logits


def high_frequency_map(self_attention, threshold: float):
  """FAS split (docs/design.md §3): attention each token receives, averaged over heads; > threshold is 'high'."""
  received = jnp.sum(jnp.mean(self_attention, axis=1), axis=1)  # (B, N), mean over tokens is 1
  return received > threshold


@dataclasses.dataclass(frozen=True)
class Schedules:
  keep_counts: np.ndarray  # (T,) int32
  guidance: np.ndarray  # (T,) float32
  temperature: np.ndarray  # (T,) float32
  noise_scale: np.ndarray  # (T,) float32
  strategy_index: np.ndarray  # (T,) int32 into Sampler.strategies
  freeze: np.ndarray  # (T,) bool: visible tokens keep their value this step
  # (T,) float32: mask schedule value after step t, for canvases that start partly visible.
  mask_ratio_after: np.ndarray
  # (T,) float32: masked fraction of the canvas entering step t, 1 - k_{t-1}/N (the selector's ratio input,
  # as in its training: the masked fraction of the generator input that produced x̂).
  input_mask_ratio: np.ndarray


class Sampler:
  """`Sampler(model, cfg, selector)(params, text_ids, rng)` -> SampleOutput. Compiles once per batch shape.

  model: the generator as functions (`sampling.model.MaskedGenerator`); selector: the TCTS selector
  (`TokenSelector`), needed by the tcts* strategies only. trajectory: also return per-step x̂, kept masks
  and FAS maps. decode: False skips image decoding (`images` is then None), for callers that only need
  tokens.
  """

  def __init__(
    self,
    model: MaskedGenerator,
    cfg,
    selector: Optional[TokenSelector] = None,
    trajectory: bool = False,
    decode: bool = True,
  ):
    validate(cfg, model, selector)
    self.model, self.selector, self.cfg, self.trajectory = model, selector, cfg, trajectory
    self.decode_images = decode and model.decode is not None
    names = strategy_per_step(cfg)
    unique = list(dict.fromkeys(names))
    self.strategies = tuple(strat.make_strategy(n, cfg) for n in unique)
    index = np.array([unique.index(n) for n in names], np.int32)
    progress = np.arange(1, cfg.steps + 1) / cfg.steps
    noise_per_strategy = [np.broadcast_to(s.noise_scale(progress), progress.shape) for s in self.strategies]
    noise = np.array([noise_per_strategy[i][t] for t, i in enumerate(index)], np.float32)
    revocable = np.array([self.strategies[i].revocable for i in index])
    keep_counts = schedules.keep_counts(
      cfg.steps, model.num_tokens, cfg.mask_schedule, cfg.get('count_rule', 'reserve')
    )
    self.schedules = Schedules(
      keep_counts=keep_counts,
      guidance=schedules.guidance_scales(cfg.steps, cfg.guidance_scale, cfg.guidance_schedule),
      temperature=np.full(cfg.steps, cfg.temperature, np.float32),
      noise_scale=noise,
      strategy_index=index,
      freeze=~revocable | cfg.freeze_visible,
      mask_ratio_after=np.asarray(schedules.mask_ratio(progress, cfg.mask_schedule), np.float32),
      input_mask_ratio=(1.0 - np.concatenate([[0], keep_counts[:-1]]) / model.num_tokens).astype(np.float32),
    )
    self.needs_attention = any(s.needs_high_freq for s in self.strategies)
    self.needs_selector = any(s.needs_selector for s in self.strategies)
    self.selector_guidance = float(cfg.get('selector_guidance', 1.0))
    self._sample = jax.jit(self._sample_impl)

  def __call__(self, params, text_ids, rng, negative_ids=None, init_tokens=None, locked=None) -> SampleOutput:
    """Sample from an all-[MASK] canvas, or complete `init_tokens` (B, N) whose [MASK] positions are
    generated; `locked` (B, N) bool marks visible tokens that never change (inpainting, editing)."""
    if locked is not None:
      if init_tokens is None:
        raise ValueError('locked needs init_tokens')
      if np.any(np.asarray(locked) & (np.asarray(init_tokens) == self.model.mask_id)):
        raise ValueError('locked positions must hold tokens, not [MASK]')
    return self._sample(params, jnp.asarray(text_ids), rng, negative_ids, init_tokens, locked)

  def _sample_impl(self, params, text_ids, rng, negative_ids, init_tokens=None, locked=None):
    m, cfg, sch = self.model, self.cfg, self.schedules
    b, n = text_ids.shape[0], m.num_tokens
    if init_tokens is None:
      x0, keep_counts = jnp.full((b, n), m.mask_id, jnp.int32), sch.keep_counts
    else:
      # Per image, the masked count n0 shrinks along the same mask schedule: k_t = N - floor(n0 r_t).
      x0 = jnp.asarray(init_tokens, jnp.int32)
      n0 = jnp.sum(x0 == m.mask_id, axis=-1)
      keep_counts = n - jnp.clip(jnp.floor(n0[None] * sch.mask_ratio_after[:, None]), 0, n).astype(jnp.int32)
    locked = jnp.zeros((b, n), bool) if locked is None else jnp.asarray(locked, bool)
    # The text side, once: conditional and unconditional (null text or negative prompt) rows.
    text = m.encode_text(params, text_ids, negative_ids)
    selector_text = self.selector.encode_text(params, text_ids, negative_ids) if self.needs_selector else None
    attention_layer = cfg.fas_layer if self.needs_attention else None
    keep_logit_fns = [s.keep_logits for s in self.strategies]

    def step(carry, per_step):
      x, rng = carry
      rng, r_draw, r_select = jax.random.split(rng, 3)
      kept = x != m.mask_id
      logits, maps = m.logits(params, jnp.concatenate([x, x]), text, attention_layer)
      cond, uncond = logits[:b], logits[b:]
      guided = cond + per_step['guidance'] * (cond - uncond)
      guided = _truncate(guided / per_step['temperature'], cfg.top_k, cfg.top_p)
      x_hat = sample_categorical(r_draw, guided)
      logp = jnp.take_along_axis(jax.nn.log_softmax(guided), x_hat[..., None], axis=-1)[..., 0]
      x_hat = jnp.where((kept & per_step['freeze']) | locked, x, x_hat)
      high_freq = (
        high_frequency_map(maps['self_attention'][:b], cfg.fas_threshold)
        if maps is not None
        else jnp.ones((b, n), bool)
      )
      # The selector scores the x̂ the strategy chooses from (after the freeze rule), in this same step.
      scores = (
        guided_selector_logits(self.selector, params, x_hat, per_step['ratio'], selector_text, self.selector_guidance)
        if self.needs_selector
        else jnp.zeros((b, n))
      )
      inputs = strat.StepInputs(kept=kept, logp=logp, high_freq=high_freq, selector_logits=scores)
      keep_logits = jnp.where(locked, jnp.inf, jax.lax.switch(per_step['strategy'], keep_logit_fns, inputs))
      keep = gumbel_top_k(r_select, keep_logits, per_step['k'], per_step['noise'])
      x_next = jnp.where(keep, x_hat, m.mask_id)
      out = dict(tokens=x_hat, kept=keep, high_freq=high_freq) if self.trajectory else None
      if self.trajectory and self.needs_selector:
        out['selector_logits'] = scores
      return (x_next, rng), out

    per_step = dict(
      k=keep_counts,
      guidance=sch.guidance,
      temperature=sch.temperature,
      noise=sch.noise_scale,
      strategy=sch.strategy_index,
      freeze=sch.freeze,
      ratio=sch.input_mask_ratio,
    )
    (tokens, _), traj = jax.lax.scan(step, (x0, rng), per_step)
    images = m.decode(params, tokens) if self.decode_images else None
    if self.trajectory and self.decode_images:
      t = cfg.steps
      traj['images'] = m.decode(params, traj['tokens'].reshape(t * b, n)).reshape((t, b) + images.shape[1:])
    return SampleOutput(tokens=tokens, images=images, trajectory=traj)


def validate(cfg, model: MaskedGenerator, selector: Optional[TokenSelector] = None) -> None:
  """One-line errors for bad sampler settings, raised before anything is traced."""
  n = model.num_tokens
  if not 1 <= cfg.steps <= n:
    raise ValueError(f'steps must be in [1, {n}] (the number of image tokens), got {cfg.steps}')
  used = [strat.make_strategy(name, cfg) for name in set(strategy_per_step(cfg))]
  if any(s.needs_selector for s in used) and selector is None:
    raise ValueError(f'strategy {cfg.strategy!r} needs a TCTS selector, but the sampler was given none')
  if cfg.get('selector_guidance', 1.0) < 0:
    raise ValueError(f'selector_guidance must be >= 0, got {cfg.selector_guidance}')
  if cfg.get('tcts_sharpness', 1.0) <= 0:
    raise ValueError(f'tcts_sharpness must be > 0, got {cfg.tcts_sharpness}')
  if cfg.get('tcts_noise', 1.0) < 0:
    raise ValueError(f'tcts_noise must be >= 0, got {cfg.tcts_noise}')
  if cfg.persistent_weight <= 0:
    raise ValueError(f'persistent_weight must be > 0, got {cfg.persistent_weight}')
  if any(s.needs_high_freq for s in used) and not 0 <= cfg.fas_layer < model.num_layers:
    raise ValueError(f'fas_layer {cfg.fas_layer} out of range [0, {model.num_layers})')
  if cfg.guidance_scale < 0:
    raise ValueError(f'guidance_scale must be >= 0, got {cfg.guidance_scale}')
  schedules.guidance_scales(cfg.steps, cfg.guidance_scale, cfg.guidance_schedule)
  schedules.mask_ratio(0.0, cfg.mask_schedule)
  schedules.keep_counts(cfg.steps, n, cfg.mask_schedule, cfg.get('count_rule', 'reserve'))
  if cfg.temperature <= 0:
    raise ValueError(f'temperature must be > 0, got {cfg.temperature}')
  if not 0 <= cfg.top_k <= model.codebook_size:
    raise ValueError(f'top_k must be in [0, {model.codebook_size}], got {cfg.top_k}')
  if not 0 < cfg.top_p <= 1:
    raise ValueError(f'top_p must be in (0, 1], got {cfg.top_p}')
