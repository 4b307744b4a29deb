"""The sampler: every step (generator with CFG, token draw, strategy, selection) in ONE `lax.scan`.

All per-step quantities (k_t, guidance scale, temperature, noise scale, strategy index) are NumPy
arrays built from the config before tracing and handed to the compiled program as arguments, so the step
count is static, nothing in the loop depends on Python control flow over traced values, and a new prompt,
seed or per-step setting (`PER_STEP_SETTINGS`: strategy, guidance, temperature, mask schedule, ...) reuses
the compiled program. What a step computes beyond the draw (attention maps, selector scores, purity,
diagnostics) is computed only when a strategy the sampler was built for (or the caller) asks for it.

The model comes in as functions (`sampling.model`): the text side is encoded once, before the scan;
each step calls the generator's `logits` (and the selector's, for TCTS). Nothing here imports a model.
"""

import dataclasses
import json
import math
from typing import Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.sampling import schedules
from tcts_jax.sampling import strategies as strat
from tcts_jax.sampling.model import (
  MaskedGenerator,
  TokenSelector,
  conditional_rows,
  guided_selector_logits,
  with_row_chunks,
)
from tcts_jax.sampling.select import draw_categorical, gumbel_top_k
from tcts_jax.utils.precision import COMPUTE_DTYPES, cast_floating

VISIBLE_TOKENS = ('keep', 'redraw')
# Sampler settings that only change the per-step arrays the compiled program reads. A sampler runs any config
# that differs from its own in these alone, if it was built for the strategies that config uses
# (`Sampler(..., strategies=...)`, `sampler(..., settings=cfg)`), without compiling again.
PER_STEP_SETTINGS = (
  'strategy',
  'guidance_scale',
  'guidance_schedule',
  'temperature',
  'mask_schedule',
  'count_rule',
  'visible_tokens',
)


@flax.struct.dataclass
class SampleOutput:
  tokens: jnp.ndarray  # (B, N) final token ids
  images: Optional[jnp.ndarray]  # (B, H, W, 3) float in [0, 1]; None if not decoded
  # Per step (T, B, ...): x̂ `tokens` and their decoded `images`, the `kept` mask after the step, the
  # FAS `high_freq` map, `cross_attention` (the authors' FAS map, with fas_map='cross_attention') and
  # `selector_logits` (guided TCTS scores of x̂) when a strategy uses the selector. None unless the sampler
  # was built with trajectory=True.
  trajectory: Optional[dict] = None
  # With diagnostics=True (docs/design.md §2.3), per step (T, B) float32: 'decided', 'revoked', 'churn',
  # 'entropy_masked', 'entropy_visible'; and 'midpoint_tokens' (B, N) int32. None otherwise.
  diagnostics: Optional[dict] = None


def sampler_config(base, **overrides):
  """A copy of the sampler config `base` (references resolved) with `overrides`; unknown keys are an error."""
  cfg = base.copy_and_resolve_references()
  with cfg.unlocked():
    for key, value in overrides.items():
      if key not in cfg:
        raise ValueError(f'unknown sampler setting {key!r}')
      cfg[key] = value
  return cfg


def static_settings(cfg) -> dict:
  """The settings of sampler config `cfg` that its compiled program holds fixed: all but `PER_STEP_SETTINGS`, and
  whether it guides at all ('guided': an unguided program runs no unconditional rows)."""
  settings = {k: v for k, v in cfg.to_dict().items() if k not in PER_STEP_SETTINGS}
  return {**settings, 'guided': cfg.guidance_scale > 0}


def program_key(cfg) -> tuple:
  """What of sampler config `cfg` decides the compiled program: its static settings and the set of strategies
  it uses. Configs with equal keys run on one `Sampler` (`settings=`)."""
  return json.dumps(static_settings(cfg), sort_keys=True, default=str), tuple(sorted(set(strategy_per_step(cfg))))


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


def held_steps(cfg) -> tuple:
  """The (start, stop) step fractions in which the kept count holds (`schedules.keep_counts(hold=...)`): ReMDM's
  loop, `remdm_loop`, when a remdm step of this config uses remdm_schedule='loop'; else none."""
  if cfg.get('remdm_schedule', 'cap') == 'loop' and 'remdm' in strategy_per_step(cfg):
    return tuple(cfg.get('remdm_loop', (0.45, 0.95)))
  return (0.0, 0.0)


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


def guided_logits(cond, uncond, guidance, aux=None, self_guidance=0.0):
  """Classifier-free guidance `cond + g (cond - uncond)`, plus self-guidance `s (cond - aux)` when the auxiliary
  model's logits `aux` are given (docs/design.md §15): with g = 0 this is Hur et al.'s aux + (1 + s)(cond - aux)."""
  guided = cond + guidance * (cond - uncond)
  return guided if aux is None else guided + self_guidance * (cond - aux)


def guided_features(cond, uncond, guidance):
  """`guided_logits` before an affine head: head(f_c + g (f_c - f_u)) = c + g (c - u). Combined in float32 and
  returned in the features' dtype, so a bfloat16 head stays a bfloat16 matmul."""
  c, u = cond.astype(jnp.float32), uncond.astype(jnp.float32)
  return (c + guidance * (c - u)).astype(cond.dtype)


def high_frequency_map(self_attention, threshold: float):
  """FAS split (docs/design.md §3): attention each token receives, averaged over heads; > threshold is 'high'."""
  received = jnp.sum(jnp.mean(self_attention, axis=1), axis=1)  # (B, N), mean over tokens is 1
  return received > threshold


def cross_attention_layers(num_layers: int) -> tuple:
  """The generator layers the authors' cross-attention FAS map averages: the first 13/19 of them (at least one)."""
  return tuple(range(max(1, round(strat.CROSS_ATTENTION_LAYER_FRACTION * num_layers))))


def cross_attention_map(cross_attention_logits):
  """The authors' FAS map (docs/design.md §3.1) from per-layer cross-attention logits, each (B, heads, N, L)
  with -inf where a query may not attend: sigmoid, mean over layers, heads and text positions, then per image
  `a / max(a) - min(a / max(a))`, in [0, 1)."""
  a = jnp.mean(jnp.stack([jnp.mean(jax.nn.sigmoid(x), axis=(1, 3)) for x in cross_attention_logits]), axis=0)
  a = a / (jnp.max(a, axis=-1, keepdims=True) + 1e-10)
  return jnp.maximum(a - jnp.min(a, axis=-1, keepdims=True), 0.0)  # >= 0 also when XLA rounds the two a's apart


def purity_of(logits):
  """Improved VQ-Diffusion's purity (B, N): the max probability of `logits` (B, N, K), over its max in the image."""
  purity = jnp.exp(jnp.max(logits, axis=-1) - jax.nn.logsumexp(logits, axis=-1))
  return purity / (jnp.max(purity, axis=-1, keepdims=True) + 1e-10)


def entropy(logits):
  """Entropy in nats (...) of softmax(logits) (..., K); -inf logits (truncated tokens) contribute 0."""
  logp = jax.nn.log_softmax(logits, axis=-1)
  return -jnp.sum(jnp.where(jnp.isfinite(logp), jnp.exp(logp) * logp, 0.0), axis=-1)


def _masked_mean(values, where):
  """Mean of `values` (B, N) over `where` per row; 0 for a row where nothing is selected."""
  count = jnp.sum(where, axis=-1)
  return jnp.where(count > 0, jnp.sum(jnp.where(where, values, 0.0), axis=-1) / jnp.maximum(count, 1), 0.0)


@dataclasses.dataclass(frozen=True)
class Schedules:
  keep_counts: np.ndarray  # (T,) int32
  guidance: np.ndarray  # (T,) float32
  temperature: np.ndarray  # (T,) float32
  noise_scale: np.ndarray  # (T,) float32
  strategy_index: np.ndarray  # (T,) int32 into Sampler.strategies
  freeze: np.ndarray  # (T,) bool: visible tokens keep their value this step
  # (T,) int32: 0 = x̂ drawn from the guided logits, i > 0 = through the token_logits of Sampler.token_transforms[i-1].
  token_transform: np.ndarray
  time: np.ndarray  # (T,) float32: t/T, t = 0..T-1
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
  tokens. diagnostics: also return per-step decided / revoked / churn counts, entropies and the midpoint x̂
  (`SampleOutput.diagnostics`), computed in the same scan. strategies: names of further strategies the one
  compiled program can run (besides those of `cfg`), for sweeps: `sampler(..., settings=other_cfg)` then runs
  any config that differs from `cfg` only in `PER_STEP_SETTINGS` and uses these strategies. Every step then
  computes what any of them needs (selector scores, attention maps, ...), so a sweep trades a slower step for
  one compilation.
  """

  def __init__(
    self,
    model: MaskedGenerator,
    cfg,
    selector: Optional[TokenSelector] = None,
    trajectory: bool = False,
    decode: bool = True,
    diagnostics: bool = False,
    strategies: Sequence[str] = (),
  ):
    validate(cfg, model, selector)
    model, selector = with_row_chunks(model, selector, cfg.get('forward_rows', 0))
    self.model, self.selector, self.cfg = model, selector, cfg
    self.trajectory, self.diagnostics = trajectory, diagnostics
    self.decode_images = decode and model.decode is not None
    self.strategy_names = tuple(dict.fromkeys(strategy_per_step(cfg) + list(strategies)))
    self.strategies = tuple(strat.make_strategy(n, cfg) for n in self.strategy_names)
    if selector is None and any(s.needs_selector for s in self.strategies):
      raise ValueError(f'strategies {self.strategy_names} need a TCTS selector, but the sampler was given none')
    # Strategies that change the token distribution (Sampler step: 0 = unchanged, i = token_transforms[i - 1]).
    self._transforming = [i for i, s in enumerate(self.strategies) if s.token_logits is not None]
    self.token_transforms = tuple(self.strategies[i] for i in self._transforming)
    self.schedules = self.schedules_for(cfg)
    self.needs_attention = any(s.needs_high_freq for s in self.strategies)
    self.needs_cross_attention = any(s.needs_cross_attention for s in self.strategies)
    self.needs_selector = any(s.needs_selector for s in self.strategies)
    self.needs_purity = any(s.needs_purity for s in self.strategies)
    self.needs_reference = any(s.needs_reference for s in self.strategies)
    self.needs_entropy = any(s.needs_entropy for s in self.strategies)
    self.needs_uniform = any(s.needs_uniform for s in self.strategies)
    self.adaptive_count = any(s.keep_count is not None for s in self.strategies)
    self.selector_guidance = float(cfg.get('selector_guidance', 1.0))
    self.self_guidance = float(cfg.get('self_guidance_scale', 0.0))
    # Guidance on the features before an affine head (docs/design.md §2.3): the head then runs on B rows, not 2B.
    # Self-guidance combines logits of two models, so it guides the logits.
    self.guide_features = model.features is not None and model.head is not None and not self.self_guidance
    # Guidance 0 at every step is c + 0 (c - u) = c: the forwards run on the B conditional rows alone.
    self.guided = static_settings(cfg)['guided']
    self._sample = jax.jit(self._sample_impl)

  def schedules_for(self, cfg) -> Schedules:
    """The per-step arrays of sampler config `cfg`, for this compiled program. A one-line error if `cfg` differs
    from the sampler's own config outside `PER_STEP_SETTINGS` or uses a strategy it was not built for."""
    own, other = static_settings(self.cfg), static_settings(cfg)
    changed = sorted(k for k in own.keys() | other.keys() if own.get(k) != other.get(k))
    if changed:
      raise ValueError(f'settings differ from the compiled sampler in {changed}: build a Sampler for them')
    names = strategy_per_step(cfg)
    missing = [n for n in dict.fromkeys(names) if n not in self.strategy_names]
    if missing:
      raise ValueError(f'the sampler was not built for strategies {missing} (it runs {list(self.strategy_names)})')
    validate(cfg, self.model, self.selector)
    index = np.array([self.strategy_names.index(n) for n in names], np.int32)
    progress = np.arange(1, cfg.steps + 1) / cfg.steps
    noise_of = {i: np.broadcast_to(self.strategies[i].noise_scale(progress), progress.shape) for i in set(index)}
    noise = np.array([noise_of[i][t] for t, i in enumerate(index)], np.float32)
    revocable = np.array([self.strategies[i].revocable for i in index])
    token_transform = np.zeros(cfg.steps, np.int32)
    for j, i in enumerate(self._transforming):
      at = np.broadcast_to(self.strategies[i].token_logits_at(progress), progress.shape)
      token_transform[(index == i) & at] = j + 1
    keep_counts = schedules.keep_counts(
      cfg.steps, self.model.num_tokens, cfg.mask_schedule, cfg.get('count_rule', 'reserve'), held_steps(cfg)
    )
    # 'keep': x̂ = x at every visible position, every strategy; 'redraw': revocable strategies redraw them.
    redraw = cfg.get('visible_tokens', 'keep') == 'redraw'
    return Schedules(
      keep_counts=keep_counts,
      guidance=schedules.guidance_scales(cfg.steps, cfg.guidance_scale, cfg.guidance_schedule),
      temperature=np.full(cfg.steps, cfg.temperature, np.float32),
      noise_scale=noise,
      strategy_index=index,
      freeze=~revocable if redraw else np.ones(cfg.steps, bool),
      mask_ratio_after=np.asarray(schedules.mask_ratio(progress, cfg.mask_schedule), np.float32),
      input_mask_ratio=(1.0 - np.concatenate([[0], keep_counts[:-1]]) / self.model.num_tokens).astype(np.float32),
      token_transform=token_transform,
      time=(np.arange(cfg.steps) / cfg.steps).astype(np.float32),
    )

  def __call__(
    self,
    params,
    text_ids,
    rng,
    negative_ids=None,
    init_tokens=None,
    locked=None,
    reference_tokens=None,
    settings=None,
  ) -> SampleOutput:
    """Sample from an all-[MASK] canvas, or complete `init_tokens` (B, N) whose [MASK] positions are
    generated; `locked` (B, N) bool marks visible tokens that never change (inpainting, editing).
    `reference_tokens` (B, N) int32: the tokens of a real image per prompt, for the oracle strategies.
    `settings`: a sampler config to run instead of the sampler's own (see `schedules_for`)."""
    args = self.arguments(params, text_ids, rng, negative_ids, init_tokens, locked, reference_tokens, settings)
    return self._sample(*args)

  def lower(self, *args, **kwargs) -> jax.stages.Lowered:
    """The compiled program's `jax.stages.Lowered` for a call with these arguments (for cost and memory analysis)."""
    return self._sample.lower(*self.arguments(*args, **kwargs))

  def arguments(
    self, params, text_ids, rng, negative_ids=None, init_tokens=None, locked=None, reference_tokens=None, settings=None
  ) -> tuple:
    """The compiled program's arguments for a call (checked): `params`, the per-step arrays, then the rest."""
    if locked is not None:
      if init_tokens is None:
        raise ValueError('locked needs init_tokens')
      if np.any(np.asarray(locked) & (np.asarray(init_tokens) == self.model.mask_id)):
        raise ValueError('locked positions must hold tokens, not [MASK]')
    sch = self.schedules if settings is None else self.schedules_for(settings)
    if init_tokens is not None and held_steps(self.cfg if settings is None else settings) != (0.0, 0.0):
      # A started canvas counts its own masked tokens down the mask schedule, which has no hold.
      raise ValueError("ReMDM's loop (remdm_schedule='loop') samples from an empty canvas only, not from init_tokens")
    used = {int(i) for i in sch.strategy_index}
    expected = (np.shape(text_ids)[0], self.model.num_tokens)
    if reference_tokens is None and any(self.strategies[i].needs_reference for i in used):
      strategy = (self.cfg if settings is None else settings).strategy
      raise ValueError(f'strategy {strategy!r} needs reference_tokens (the tokens of a real image per prompt)')
    if reference_tokens is not None and np.shape(reference_tokens) != expected:
      raise ValueError(f'reference_tokens must have shape {expected}, got {np.shape(reference_tokens)}')
    if reference_tokens is None and self.needs_reference:  # built for an oracle this run does not use
      reference_tokens = np.zeros(expected, np.int32)
    per_step = dict(
      k=sch.keep_counts,
      guidance=sch.guidance,
      temperature=sch.temperature,
      noise=sch.noise_scale,
      strategy=sch.strategy_index,
      freeze=sch.freeze,
      ratio=sch.input_mask_ratio,
      token_transform=sch.token_transform,
      time=sch.time,
      mask_ratio_after=sch.mask_ratio_after,
    )
    return params, per_step, jnp.asarray(text_ids), rng, negative_ids, init_tokens, locked, reference_tokens

  def _sample_impl(
    self, params, per_step, text_ids, rng, negative_ids, init_tokens=None, locked=None, reference_tokens=None
  ):
    m, cfg = self.model, self.cfg
    b, n = text_ids.shape[0], m.num_tokens
    per_step = dict(per_step, step=jnp.arange(cfg.steps, dtype=jnp.int32))
    # bfloat16 compute: the generator, text side and selector run on bfloat16 copies of the params (float32:
    # on the params as stored). What they return is float32 from here on; decoding reads the stored params.
    stored_params = params
    if cfg.get('compute_dtype', 'float32') != 'float32':
      params = cast_floating(params, COMPUTE_DTYPES[cfg.compute_dtype])
    mask_ratio_after = per_step.pop('mask_ratio_after')
    if init_tokens is None:
      x0 = jnp.full((b, n), m.mask_id, jnp.int32)
    else:
      # Per image, the masked count n0 shrinks along the same mask schedule: k_t = N - floor(n0 r_t).
      x0 = jnp.asarray(init_tokens, jnp.int32)
      n0 = jnp.sum(x0 == m.mask_id, axis=-1)
      per_step['k'] = n - jnp.clip(jnp.floor(n0[None] * mask_ratio_after[:, None]), 0, n).astype(jnp.int32)
    locked = jnp.zeros((b, n), bool) if locked is None else jnp.asarray(locked, bool)
    reference = None if reference_tokens is None else jnp.asarray(reference_tokens, jnp.int32)
    # The text side, once: conditional and unconditional (null text or negative prompt) rows.
    text = m.encode_text(params, text_ids, negative_ids)
    selector_text = self.selector.encode_text(params, text_ids, negative_ids) if self.needs_selector else None
    if self.needs_cross_attention:
      attention_layer = cross_attention_layers(m.num_layers)
    else:
      attention_layer = cfg.fas_layer if self.needs_attention else None
    keep_logit_fns = [s.keep_logits for s in self.strategies]
    token_logit_fns = [lambda logits, purity: logits] + [s.token_logits for s in self.token_transforms]
    # Per-row kept counts: the schedule's k_t, or a strategy's own count rule (entropy_bounded).
    count_fns = [
      s.keep_count or (lambda inputs, k: jnp.broadcast_to(k, (b,)).astype(jnp.int32)) for s in self.strategies
    ]

    def step(carry, per_step):
      x, rng, midpoint = carry
      rng, r_draw, r_select = jax.random.split(rng, 3)
      kept = x != m.mask_id
      rows, rows_text = (jnp.concatenate([x, x]), text) if self.guided else (x, conditional_rows(text, b))

      def halves(out):  # (conditional, unconditional) rows of a forward; unguided, both are the conditional ones
        return (out[:b], out[b:]) if self.guided else (out, out)

      if self.guide_features:
        features, maps = m.features(params, rows, rows_text, attention_layer)
        guided = as_float32(m.head(params, guided_features(*halves(features), per_step['guidance'])))
        maps = as_float32(maps)
      else:
        logits, maps = as_float32(m.logits(params, rows, rows_text, attention_layer))
        cond, uncond = halves(logits)
        # Self-guidance: the auxiliary model on the same canvas and the conditional text.
        aux = as_float32(m.aux_logits(params, x, conditional_rows(text, b))) if self.self_guidance else None
        guided = guided_logits(cond, uncond, per_step['guidance'], aux, self.self_guidance)
      guided = guided / per_step['temperature']
      # Purity reads the distribution before truncation (truncation keeps its max token but renormalises).
      purity = purity_of(guided) if self.needs_purity else jnp.ones((b, n))
      guided = _truncate(guided, cfg.top_k, cfg.top_p)
      if self.token_transforms:
        guided = jax.lax.switch(per_step['token_transform'], token_logit_fns, guided, purity)
      x_hat, log_normaliser = draw_categorical(r_draw, guided)
      x_hat = jnp.where((kept & per_step['freeze']) | locked, x, x_hat)
      logp = jnp.take_along_axis(guided, x_hat[..., None], axis=-1)[..., 0] - log_normaliser
      high_freq = (
        high_frequency_map(maps['self_attention'][:b], cfg.fas_threshold)
        if self.needs_attention
        else jnp.ones((b, n), bool)
      )
      if self.needs_cross_attention:
        # As in the authors' code, the map of the pass that ran last: the unconditional one under guidance.
        cross = cross_attention_map([_cross_logits(layer_maps) for layer_maps in maps])
        cross_cond, cross_uncond = halves(cross)
        cross = jnp.where(per_step['guidance'] == 0, cross_cond, cross_uncond)
      else:
        cross = jnp.zeros((b, n))
      # The selector scores the x̂ the strategy chooses from (after the visible-token rule), in this same step.
      scores = (
        as_float32(
          guided_selector_logits(self.selector, params, x_hat, per_step['ratio'], selector_text, self.selector_guidance)
        )
        if self.needs_selector
        else jnp.zeros((b, n))
      )
      # The draw distribution's entropy, once for the strategy (entropy_bounded) and the diagnostics.
      draw_entropy = entropy(guided) if self.needs_entropy or self.diagnostics else None
      # From a key of its own, so the other draws (and every other strategy's samples) stay as they were.
      uniform = jax.random.uniform(jax.random.fold_in(r_select, 1), (b, n)) if self.needs_uniform else jnp.zeros((b, n))
      inputs = strat.StepInputs(
        kept=kept,
        logp=logp,
        high_freq=high_freq,
        selector_logits=scores,
        purity=purity,
        cross_attention=cross,
        reference_match=(x_hat == reference) if self.needs_reference else jnp.zeros((b, n), bool),
        time=per_step['time'],
        keep_fraction=per_step['k'] / n,
        entropy=draw_entropy if self.needs_entropy else jnp.zeros((b, n)),
        uniform=uniform,
      )
      keep_logits = jnp.where(locked, jnp.inf, jax.lax.switch(per_step['strategy'], keep_logit_fns, inputs))
      k = (
        jax.lax.switch(per_step['strategy'], count_fns, inputs, per_step['k']) if self.adaptive_count else per_step['k']
      )
      keep = gumbel_top_k(r_select, keep_logits, k, per_step['noise'])
      x_next = jnp.where(keep, x_hat, m.mask_id)
      out = {}
      if self.trajectory:
        out['trajectory'] = dict(tokens=x_hat, kept=keep, high_freq=high_freq)
        if self.needs_selector:
          out['trajectory']['selector_logits'] = scores
        if self.needs_cross_attention:
          out['trajectory']['cross_attention'] = cross
      if self.diagnostics:
        out['diagnostics'] = _step_diagnostics(x, x_hat, kept, keep, draw_entropy)
        midpoint = jnp.where(per_step['step'] == (cfg.steps - 1) // 2, x_hat, midpoint)
      return (x_next, rng, midpoint), out

    midpoint = jnp.zeros((b, n), jnp.int32) if self.diagnostics else None
    (tokens, _, midpoint), out = jax.lax.scan(step, (x0, rng, midpoint), per_step)
    images = m.decode(stored_params, tokens) if self.decode_images else None
    traj = out.get('trajectory')
    if self.trajectory and self.decode_images:
      t = cfg.steps
      traj['images'] = m.decode(stored_params, traj['tokens'].reshape(t * b, n)).reshape((t, b) + images.shape[1:])
    diagnostics = dict(out['diagnostics'], midpoint_tokens=midpoint) if self.diagnostics else None
    return SampleOutput(tokens=tokens, images=images, trajectory=traj, diagnostics=diagnostics)


def as_float32(tree):
  """Floating-point leaves of `tree` as float32 (the sampler's math after a lower-precision forward)."""
  return cast_floating(tree, jnp.float32)


def _cross_logits(layer_maps: dict):
  if 'cross_attention_logits' not in layer_maps:
    raise ValueError("fas_map='cross_attention' needs a model whose attention maps include cross_attention_logits")
  return layer_maps['cross_attention_logits']


def _step_diagnostics(x, x_hat, kept, keep, h) -> dict:
  """One step's diagnostics (docs/design.md §2.3), each (B,) float32; `h` (B, N) is the draw's entropy."""
  stayed = kept & keep
  changed = jnp.sum(stayed & (x_hat != x), axis=-1)
  return dict(
    decided=jnp.sum(~kept & keep, axis=-1).astype(jnp.float32),
    revoked=jnp.sum(kept & ~keep, axis=-1).astype(jnp.float32),
    churn=(changed / jnp.maximum(jnp.sum(stayed, axis=-1), 1)).astype(jnp.float32),
    entropy_masked=_masked_mean(h, ~kept).astype(jnp.float32),
    entropy_visible=_masked_mean(h, kept).astype(jnp.float32),
  )


def validate(cfg, model: MaskedGenerator, selector: Optional[TokenSelector] = None) -> None:
  """One-line errors for bad sampler settings, raised before anything is traced."""
  n = model.num_tokens
  for key, value in cfg.items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f'{key} must be finite, got {value}')
  if not 1 <= cfg.steps <= n:
    raise ValueError(f'steps must be in [1, {n}] (the number of image tokens), got {cfg.steps}')
  if cfg.get('compute_dtype', 'float32') not in COMPUTE_DTYPES:
    raise ValueError(f'compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {cfg.compute_dtype!r}')
  rows = cfg.get('forward_rows', 0)
  if not isinstance(rows, int) or rows < 0:
    raise ValueError(f'forward_rows must be an int >= 0 (0: all rows in one forward), got {rows!r}')
  if cfg.get('visible_tokens', 'keep') not in VISIBLE_TOKENS:
    raise ValueError(f'visible_tokens must be one of {VISIBLE_TOKENS}, got {cfg.visible_tokens!r}')
  if cfg.get('fas_map', 'self_attention') not in strat.FAS_MAPS:
    raise ValueError(f'fas_map must be one of {strat.FAS_MAPS}, got {cfg.fas_map!r}')
  used = [strat.make_strategy(name, cfg) for name in set(strategy_per_step(cfg))]
  if any(s.needs_selector for s in used) and selector is None:
    raise ValueError(f'strategy {cfg.strategy!r} needs a TCTS selector, but the sampler was given none')
  if cfg.get('selector_guidance', 1.0) < 0:
    raise ValueError(f'selector_guidance must be >= 0, got {cfg.selector_guidance}')
  if cfg.get('tcts_sharpness', 1.0) <= 0:
    raise ValueError(f'tcts_sharpness must be > 0, got {cfg.tcts_sharpness}')
  if cfg.get('tcts_noise', 1.0) < 0:
    raise ValueError(f'tcts_noise must be >= 0, got {cfg.tcts_noise}')
  if cfg.get('ivqd_purity_weight', 2.0) < 0:
    raise ValueError(f'ivqd_purity_weight must be >= 0, got {cfg.ivqd_purity_weight}')
  if cfg.get('fas_cross_weight', 3.0) < 0:
    raise ValueError(f'fas_cross_weight must be >= 0, got {cfg.fas_cross_weight}')
  if cfg.get('remdm_schedule', 'cap') not in strat.REMDM_SCHEDULES:
    raise ValueError(f'remdm_schedule must be one of {strat.REMDM_SCHEDULES}, got {cfg.remdm_schedule!r}')
  if not 0 <= cfg.get('remdm_eta', 0.05) <= 1:
    raise ValueError(f'remdm_eta must be in [0, 1], got {cfg.remdm_eta}')
  if cfg.get('eb_gamma', 1.0) < 0:
    raise ValueError(f'eb_gamma must be >= 0, got {cfg.eb_gamma}')
  if cfg.persistent_weight <= 0:
    raise ValueError(f'persistent_weight must be > 0, got {cfg.persistent_weight}')
  if any(s.needs_high_freq for s in used) and not 0 <= cfg.fas_layer < model.num_layers:
    raise ValueError(f'fas_layer {cfg.fas_layer} out of range [0, {model.num_layers})')
  if cfg.guidance_scale < 0:
    raise ValueError(f'guidance_scale must be >= 0, got {cfg.guidance_scale}')
  if cfg.get('self_guidance_scale', 0.0) < 0:
    raise ValueError(f'self_guidance_scale must be >= 0, got {cfg.self_guidance_scale}')
  if cfg.get('self_guidance_scale', 0.0) and model.aux_logits is None:
    raise ValueError('self_guidance_scale > 0 needs a self-guidance model (a config with a self_guidance section)')
  schedules.guidance_scales(cfg.steps, cfg.guidance_scale, cfg.guidance_schedule)
  schedules.mask_ratio(0.0, cfg.mask_schedule)
  schedules.keep_counts(cfg.steps, n, cfg.mask_schedule, cfg.get('count_rule', 'reserve'), held_steps(cfg))
  if cfg.temperature <= 0:
    raise ValueError(f'temperature must be > 0, got {cfg.temperature}')
  if not 0 <= cfg.top_k <= model.codebook_size:
    raise ValueError(f'top_k must be in [0, {model.codebook_size}], got {cfg.top_k}')
  if not 0 < cfg.top_p <= 1:
    raise ValueError(f'top_p must be in (0, 1], got {cfg.top_p}')
