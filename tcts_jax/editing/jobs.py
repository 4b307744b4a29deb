"""What the refine and edit commands share: checked inputs before anything compiles, and the picture."""

from typing import Sequence

import numpy as np

from tcts_jax.api import TextToImage
from tcts_jax.editing.images import load_image
from tcts_jax.editing.operations import EditResult
from tcts_jax.utils.files import png_output
from tcts_jax.utils.visualize import caption_grid, darken_outside, save_png, to_uint8


def open_job(config, image_path, prompt, out, weights=None, selector=None):
  """The common start of the refine and edit CLIs: check the arguments, fit the image to the model, load
  the model and check the prompt's words, all before anything compiles. -> (LoadedImage, TextToImage, Path)"""
  if not image_path or not prompt:
    raise ValueError('give --image and --prompt')
  out = png_output(out)
  image = load_image(image_path, config.data.image_size)
  t2i = TextToImage.load(config, weights, selector)
  t2i.encode_prompts([prompt])  # unknown words fail here, naming the word
  return image, t2i, out


def comparison(before, after, remasked, grid_size: int, captions: Sequence[str]) -> np.ndarray:
  """One captioned row: before | re-masked tokens (highlighted on before) | after."""
  panels = np.stack([to_uint8(before), darken_outside(before, remasked, grid_size), to_uint8(after)])
  return caption_grid(panels, list(captions), cols=3)


def save_comparison(path, t2i, tokens, result: EditResult, what: str, prompt: str) -> tuple[int, int]:
  """Write before | re-masked | after of the first image as a PNG; returns (re-masked, changed) token counts."""
  remasked, changed = int(result.remasked.sum()), int((result.tokens != tokens).sum())
  panel = comparison(
    t2i.decode_tokens(tokens)[0],
    result.images[0],
    result.remasked[0],
    t2i.models.grid_size,
    ['before (VQ tokens)', f'{what}: {remasked} tokens re-masked', f'after: {prompt}'],
  )
  save_png(path, panel)
  return remasked, changed
