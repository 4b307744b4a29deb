"""Image files and pixel regions for editing: what a user hands in, fitted to the model."""

import dataclasses
import pathlib

import numpy as np
from PIL import Image

# Transparent pixels are composited onto mid-grey: inside the shapes backgrounds' luminance range, so
# transparency does not read as an object to the model (white or black would be out of distribution).
ALPHA_BACKGROUND = (128, 128, 128)


@dataclasses.dataclass
class LoadedImage:
  pixels: np.ndarray  # (S, S, 3) uint8: what the model sees
  original_size: tuple[int, int]  # (width, height) of the file, for pixel coordinates given on it
  notes: list[str]  # what was done to fit the image (conversion, resizing); empty if nothing


def load_image(path, image_size: int) -> LoadedImage:
  """An image file as (S, S, 3) uint8 RGB. Other modes are converted (alpha composited onto mid-grey),
  other sizes resized (area averaging when shrinking, bicubic when enlarging; aspect ratio not kept);
  `notes` says which happened. Unreadable files raise a one-line error."""
  path = pathlib.Path(path)
  if not path.exists():
    raise FileNotFoundError(f'image not found: {path}')
  if path.is_dir():
    raise IsADirectoryError(f'image path is a directory: {path}')
  try:
    with Image.open(path) as im:
      im.load()
      image = im.copy()
  except (OSError, SyntaxError, ValueError) as e:  # PIL's errors for non-images and truncated files
    raise ValueError(f'cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}') from None
  notes = []
  if image.mode != 'RGB':
    mode = image.mode
    has_alpha = mode in ('RGBA', 'LA', 'PA') or (mode == 'P' and 'transparency' in image.info)
    if has_alpha:
      rgba = image.convert('RGBA')
      image = Image.new('RGB', rgba.size, ALPHA_BACKGROUND)
      image.paste(rgba, mask=rgba.getchannel('A'))
      notes.append(f'converted {mode} to RGB (transparent pixels composited onto grey)')
    else:
      image = image.convert('RGB')
      notes.append(f'converted {mode} to RGB')
  original = image.size
  if original != (image_size, image_size):
    shrink = original[0] * original[1] > image_size**2
    image = image.resize((image_size, image_size), Image.BOX if shrink else Image.BICUBIC)
    notes.append(
      f'resized {original[0]}x{original[1]} to {image_size}x{image_size} '
      f'({"area" if shrink else "bicubic"}{", aspect ratio not kept" if original[0] != original[1] else ""})'
    )
  return LoadedImage(np.asarray(image, np.uint8), original, notes)


def parse_rect(text: str) -> tuple[int, int, int, int]:
  """'x0,y0,x1,y1' -> ints (pixels; x1, y1 exclusive)."""
  parts = text.split(',')
  try:
    rect = tuple(int(p) for p in parts)
  except ValueError:
    rect = ()
  if len(rect) != 4:
    raise ValueError(f'bad rectangle {text!r}: expected four integers x0,y0,x1,y1 (pixels)')
  return rect


def rect_to_token_mask(rect, grid_size: int, width: int, height: int) -> np.ndarray:
  """(N,) bool: the tokens whose cell overlaps the pixel rectangle (x0, y0, x1, y1) (x1, y1 exclusive) of a
  width x height image that the token grid covers evenly."""
  x0, y0, x1, y1 = rect
  if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
    raise ValueError(
      f'bad rectangle {tuple(rect)}: need 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height} '
      '(pixels of the input image)'
    )

  def overlap(lo, hi, size):
    edges = np.arange(grid_size + 1) * size / grid_size
    return (edges[:-1] < hi) & (edges[1:] > lo)

  return (overlap(y0, y1, height)[:, None] & overlap(x0, x1, width)[None, :]).reshape(-1)
