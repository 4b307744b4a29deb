"""High resolution by overlapping windows (TCTS paper §4.4, docs/design.md §16): a model trained on a w x w token
grid sampled on a larger G x G canvas.

`windowed_generator` wraps a `MaskedGenerator` (and `windowed_selector` a `TokenSelector`) so that it reads the
G x G canvas as overlapping w x w windows, runs the model on all of them in one batch, and merges the per-window
predictions per position (the mean of the logits of the windows covering it). The result is again a
`MaskedGenerator`, of G² tokens, so the ordinary sampler, its strategies, guidance and the editing operations
run on it unchanged, in one compiled program.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from tcts_jax.sampling.model import MaskedGenerator, TokenSelector


def window_starts(grid: int, window: int, stride: int) -> list[int]:
  """Start offsets along one axis of windows of `window` tokens every `stride` that cover `grid` tokens; the
  last window ends at the edge."""
  if not 1 <= window <= grid:
    raise ValueError(f'the model grid {window} must fit in the canvas grid {grid}')
  if not 1 <= stride <= window:
    raise ValueError(f'window stride must be in [1, {window}] (the model grid), got {stride}')
  starts = list(range(0, grid - window + 1, stride))
  return starts if starts[-1] == grid - window else starts + [grid - window]


def window_indices(grid: int, window: int, stride: int) -> np.ndarray:
  """(W, window²) int32: the canvas positions (row-major over grid x grid) of each window's tokens, in the window's
  own row-major order."""
  starts = window_starts(grid, window, stride)
  local = np.arange(window)
  return np.array(
    [((r + local)[:, None] * grid + (c + local)[None, :]).ravel() for r in starts for c in starts], np.int32
  )


def _merge(per_window, indices, rows: int, grid: int):
  """Mean over the covering windows, per canvas position, of per-window values (rows * W, window², ...)."""
  num_windows, size = indices.shape
  values = per_window.reshape((rows, num_windows * size) + per_window.shape[2:])
  total = jnp.zeros((rows, grid * grid) + per_window.shape[2:], values.dtype).at[:, indices.ravel()].add(values)
  count = np.bincount(indices.ravel(), minlength=grid * grid).astype(np.float32)
  return total / count.reshape((1, -1) + (1,) * (values.ndim - 2))


def _windows(tokens, indices):
  """(R, G²) canvas -> (R * W, window²) windows."""
  return tokens[:, indices].reshape(-1, indices.shape[1])


def _repeat_rows(text_state, num_windows: int):
  """A text state of R rows -> R * W rows, each row repeated for its windows (the order of `_windows`)."""
  return jax.tree.map(lambda leaf: jnp.repeat(leaf, num_windows, axis=0), text_state)


def windowed_generator(model: MaskedGenerator, grid: int, stride: int, decode=None) -> MaskedGenerator:
  """`model` (a w x w token grid) on a `grid` x `grid` canvas of windows every `stride` tokens. `decode(params,
  tokens (B, grid²))` turns the canvas into images (a convolutional VQ decoder takes any grid). It gives no
  attention maps (a map over the whole canvas does not exist), so FAS strategies do not run on it."""
  window = math.isqrt(model.num_tokens)
  if window * window != model.num_tokens:
    raise ValueError(f'windows need a square token grid, the model has {model.num_tokens} tokens')
  indices = window_indices(grid, window, stride)
  num_windows = len(indices)

  def logits(params, tokens, text_state, attention_layer):
    if attention_layer is not None:
      raise ValueError(
        'the high-resolution canvas has no attention maps: FAS and cross-attention maps need the model grid'
      )
    out, _ = model.logits(params, _windows(tokens, indices), _repeat_rows(text_state, num_windows), None)
    return _merge(out, indices, tokens.shape[0], grid), None

  aux_logits = None
  if model.aux_logits is not None:

    def aux_logits(params, tokens, text_state):
      out = model.aux_logits(params, _windows(tokens, indices), _repeat_rows(text_state, num_windows))
      return _merge(out, indices, tokens.shape[0], grid)

  return MaskedGenerator(
    num_tokens=grid * grid,
    codebook_size=model.codebook_size,
    mask_id=model.mask_id,
    num_layers=model.num_layers,
    encode_text=model.encode_text,
    logits=logits,
    decode=decode,
    aux_logits=aux_logits,
  )


def windowed_selector(selector: TokenSelector, window: int, grid: int, stride: int) -> TokenSelector:
  """The TCTS selector on the same windows: each window scored by itself, the scores averaged per position."""
  indices = window_indices(grid, window, stride)
  num_windows = len(indices)

  def logits(params, tokens, ratio, text_state):
    windows = _windows(tokens, indices)
    out = selector.logits(params, windows, jnp.repeat(ratio, num_windows), _repeat_rows(text_state, num_windows))
    return _merge(out, indices, tokens.shape[0], grid)

  return TokenSelector(encode_text=selector.encode_text, logits=logits)
