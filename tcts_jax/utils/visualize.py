"""Pictures: captioned sample grids, trajectory strips, token maps, and PNG writing."""

import textwrap
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tcts_jax.utils.files import atomic_write


def to_uint8(images) -> np.ndarray:
  """Float images in [0, 1] (or uint8) -> uint8."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.round(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


def _upscale(image: np.ndarray, scale: int) -> Image.Image:
  return Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)


def _font(size=11):
  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # older Pillow: fixed-size bitmap font
    return ImageFont.load_default()


def caption_grid(
  images, captions: Optional[Sequence[str]] = None, cols: int = 4, scale: int = 4, caption_lines: int = 4
) -> np.ndarray:
  """Images (N, H, W, 3) in a grid, each upscaled `scale`x with its caption wrapped above it."""
  images = to_uint8(images)
  n, h, w, _ = images.shape
  cols = max(1, min(cols, n))
  rows = -(-n // cols)
  cell_w, text_h = w * scale, (12 * caption_lines if captions is not None else 0)
  canvas = Image.new('RGB', (cols * (cell_w + 4), rows * (h * scale + text_h + 4)), 'white')
  draw, font = ImageDraw.Draw(canvas), _font()
  chars = max(8, cell_w // 6)
  for i in range(n):
    x, y = (i % cols) * (cell_w + 4), (i // cols) * (h * scale + text_h + 4)
    if captions is not None:
      lines = textwrap.wrap(captions[i], chars)[:caption_lines]
      draw.multiline_text((x + 2, y), '\n'.join(lines), fill='black', font=font, spacing=1)
    canvas.paste(_upscale(images[i], scale), (x, y + text_h))
  return np.asarray(canvas)


def token_map(values, grid_size: int, size: int) -> np.ndarray:
  """Per-token `values` (N,) -> a (size, size) float map, one flat cell per token."""
  cell = size // grid_size
  return np.kron(np.asarray(values, np.float32).reshape(grid_size, grid_size), np.ones((cell, cell)))


def darken_outside(image, mask, grid_size: int) -> np.ndarray:
  """`image` (S, S, 3) with the tokens outside `mask` (N,) darkened (kept / re-masked tokens stand out)."""
  image = to_uint8(image)
  return (image * (0.25 + 0.75 * token_map(mask, grid_size, image.shape[0]))[..., None]).astype(np.uint8)


def trajectory_strip(
  x_hat_images,
  kept,
  high_freq,
  grid_size: int,
  caption: str = '',
  scale: int = 3,
  selector_logits=None,
  diagnostics=None,
) -> np.ndarray:
  """One prompt's steps left to right, numbered 1..T: row 1 the decoded x̂ of each step, row 2 the kept tokens
  after the step (masked ones darkened), row 3 the FAS high-frequency map (red = high frequency / revocable),
  and, given `selector_logits` (T, N), row 4 the selector's doubt sigmoid(logit) over x̂ (yellow = doubted).
  `diagnostics` ({'decided', 'revoked', 'churn'}: (T,) of the sampler's diagnostics for this image) are
  written under each step: tokens newly kept, visible tokens revoked, churn of the visible tokens kept."""
  x_hat = to_uint8(x_hat_images)  # (T, H, W, 3)
  t, h = x_hat.shape[:2]
  kept_rows = [darken_outside(x_hat[i], kept[i], grid_size) for i in range(t)]
  red = np.array([255.0, 0.0, 0.0])
  hf_rows = [
    (0.8 * red * token_map(high_freq[i], grid_size, h)[..., None] + 0.2 * x_hat[i]).astype(np.uint8) for i in range(t)
  ]
  rows = [np.concatenate(list(x_hat), 1), np.concatenate(kept_rows, 1), np.concatenate(hf_rows, 1)]
  names = ['prediction per step', 'kept tokens', 'high-frequency map in red']
  if selector_logits is not None:
    doubt = 1.0 / (1.0 + np.exp(-np.asarray(selector_logits, np.float64)))
    rows.append(np.concatenate([token_heatmap(x_hat[i], doubt[i], grid_size) for i in range(t)], 1))
    names.append('selector doubt in yellow')
  strip = np.asarray(_upscale(np.concatenate(rows, 0), scale))
  header = Image.new('RGB', (strip.shape[1], 30), 'white')
  draw = ImageDraw.Draw(header)
  below = '; under each step: +newly kept, -revoked, churn' if diagnostics is not None else ''
  draw.text((2, 1), f'{caption}   (rows: {" | ".join(names)}{below})', fill='black', font=_font())
  for i in range(t):  # step numbers over the columns
    draw.text((i * h * scale + 2, 16), f'{i + 1}', fill='black', font=_font())
  parts = [np.asarray(header), strip]
  if diagnostics is not None:
    parts.append(diagnostics_footer(diagnostics, t, h * scale, strip.shape[1]))
  return np.concatenate(parts, 0)


def diagnostics_footer(diagnostics, steps: int, column: int, width: int) -> np.ndarray:
  """Three small lines per step column: +decided, -revoked, churn %."""
  footer = Image.new('RGB', (width, 40), 'white')
  draw, font = ImageDraw.Draw(footer), _font(10)
  decided, revoked, churn = (np.asarray(diagnostics[k], np.float64) for k in ('decided', 'revoked', 'churn'))
  for i in range(steps):
    lines = (f'+{decided[i]:.0f}', f'-{revoked[i]:.0f}', f'{churn[i]:.0%} churn')
    for j, (text, colour) in enumerate(zip(lines, ('darkgreen', 'firebrick', 'black'))):
      draw.text((i * column + 2, 1 + 13 * j), text, fill=colour, font=font)
  return np.asarray(footer)


def token_heatmap(image, values, grid_size: int, alpha: float = 0.6) -> np.ndarray:
  """`image` (S, S, 3) with per-token `values` (N,) in [0, 1] overlaid as a red-to-yellow heat map
  (nearest-neighbour, one flat cell per token): where the selector doubts, where a word attends."""
  image = to_uint8(image).astype(np.float32)
  v = token_map(np.clip(np.asarray(values, np.float32), 0, 1), grid_size, image.shape[0])
  heat = np.stack([np.full_like(v, 255.0), 255.0 * v, np.zeros_like(v)], -1) * v[..., None]
  return np.round((1 - alpha) * image + alpha * heat).astype(np.uint8)


def save_png(path, image: np.ndarray) -> None:
  """Write a PNG atomically (no half-written outputs)."""
  with atomic_write(path) as f:
    Image.fromarray(to_uint8(image)).save(f, format='PNG')
