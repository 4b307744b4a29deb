"""Per-step schedules, built as NumPy arrays before the sampling scan (the scan reads them as its inputs)."""

import jax.numpy as jnp
import numpy as np

GUIDANCE_SCHEDULES = ('constant', 'linear', 'cosine')
MASK_SCHEDULES = ('cosine', 'linear')
COUNT_RULES = ('reserve', 'amused')


def mask_ratio(progress, schedule: str = 'cosine'):
  """Fraction of tokens still masked after `progress` in [0, 1] of the generation (MaskGIT).

  NumPy in, NumPy out (schedules stay NumPy even when built inside a jit trace);
  JAX arrays in, JAX out (training draws ratios with it inside jit).
  """
  xp = np if isinstance(progress, (np.ndarray, float, int)) else jnp
  if schedule == 'cosine':
    return xp.cos(0.5 * np.pi * progress)
  if schedule == 'linear':
    return 1.0 - progress
  raise ValueError(f'unknown mask schedule {schedule!r}; expected one of {MASK_SCHEDULES}')


def keep_counts(
  steps: int, num_tokens: int, schedule: str = 'cosine', rule: str = 'reserve', hold: tuple = (0.0, 0.0)
) -> np.ndarray:
  """k_t: tokens kept after step t = 0..steps-1; strictly increasing (but over a `hold`), k_{T-1} = num_tokens.

  rule 'reserve' (ours): N - floor(N r_t), at least one new token per step and room left for every later
  step. 'amused': exactly diffusers' `AmusedScheduler` (float32 arithmetic, at least one new token per step
  and at least one still masked before the last step; the last step unmasks the rest).

  `hold` = (start, stop), fractions of the steps (ReMDM's loop): L = round((stop - start) T) steps that decode
  nothing new (k_t = k_{t-1}) are inserted after the first round(start T) decoding steps; the other T - L steps
  follow the schedule.
  """
  start, stop = hold
  if not 0 <= start <= stop <= 1:
    raise ValueError(f'a hold must be fractions 0 <= start <= stop <= 1 of the steps, got {tuple(hold)}')
  held = round((stop - start) * steps)
  if held:
    decoding = steps - held
    first = min(max(round(start * steps), 1), decoding - 1) if decoding > 1 else 0
    if decoding < 1 or first < 1:
      raise ValueError(f'a hold of {held} of {steps} steps leaves too few decoding steps around it')
    k = keep_counts(decoding, num_tokens, schedule, rule)
    return np.concatenate([k[:first], np.full(held, k[first - 1]), k[first:]]).astype(np.int32)
  if not 1 <= steps <= num_tokens:
    raise ValueError(f'steps must be in [1, {num_tokens}] (the number of tokens), got {steps}')
  if rule == 'amused':
    return _amused_keep_counts(steps, num_tokens, schedule)
  if rule != 'reserve':
    raise ValueError(f'unknown count rule {rule!r}; expected one of {COUNT_RULES}')
  t = np.arange(1, steps + 1) / steps
  k = num_tokens - np.floor(num_tokens * np.asarray(mask_ratio(t, schedule), np.float64) + 1e-6).astype(np.int64)
  # At least one new token per step, and room left for the steps after.
  k = np.maximum(k, np.arange(1, steps + 1))
  k = np.minimum(k, num_tokens - np.arange(steps - 1, -1, -1))
  return np.maximum.accumulate(k).astype(np.int32)


def _amused_keep_counts(steps: int, num_tokens: int, schedule: str) -> np.ndarray:
  f32 = np.float32
  kept, counts = 0, []
  for t in range(steps - 1):
    ratio = f32(t + 1) / f32(steps)
    if schedule == 'cosine':
      masked_fraction = np.cos(ratio * f32(np.pi) / f32(2))
    elif schedule == 'linear':
      masked_fraction = f32(1) - ratio
    else:
      raise ValueError(f'unknown mask schedule {schedule!r}; expected one of {MASK_SCHEDULES}')
    masked = int(np.floor(f32(num_tokens) * masked_fraction))
    masked = max(1, min(num_tokens - kept - 1, masked))
    kept = num_tokens - masked
    counts.append(kept)
  return np.array(counts + [num_tokens], np.int32)


def guidance_scales(steps: int, scale: float, schedule: str = 'constant') -> np.ndarray:
  """Classifier-free guidance scale per step; 'linear' rises from 0 to `scale` (Muse), 'cosine' smoothly."""
  if scale < 0:
    raise ValueError(f'guidance scale must be >= 0, got {scale}')
  t = np.arange(1, steps + 1) / steps
  if schedule == 'constant':
    s = np.ones(steps)
  elif schedule == 'linear':
    s = t
  elif schedule == 'cosine':
    s = 0.5 * (1 - np.cos(np.pi * t))
  else:
    raise ValueError(f'unknown guidance schedule {schedule!r}; expected one of {GUIDANCE_SCHEDULES}')
  return (scale * s).astype(np.float32)
