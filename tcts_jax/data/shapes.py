"""Captioned shapes: a procedural text-to-image benchmark with known ground truth.

Pure numpy. A scene holds 1-3 coloured shapes in distinct cells of a 3x3 grid over a smooth,
muted background. Objects are drawn with hard edges in exact palette colours and the background
never comes near a palette colour, so every object can be recovered from the pixels exactly.
Every caption names every object with all four attributes (size, colour, shape, position).
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ('circle', 'square', 'triangle')
# Saturated and far apart in RGB (nearest pair, yellow-orange, is 80 apart); the background
# stays far below their saturation, see `_background`.
COLORS = {
  'red': (230, 25, 25),
  'green': (30, 190, 40),
  'blue': (30, 70, 230),
  'yellow': (240, 215, 20),
  'purple': (150, 40, 210),
  'orange': (245, 135, 15),
}
COLOR_NAMES = tuple(COLORS)
PALETTE = np.array([COLORS[c] for c in COLOR_NAMES], np.uint8)  # (num_colors, 3)
SIZES = ('small', 'large')
POSITIONS = ('top left', 'top', 'top right', 'left', 'middle', 'right', 'bottom left', 'bottom', 'bottom right')
POSITION_CELLS = {p: divmod(i, 3) for i, p in enumerate(POSITIONS)}  # name -> (row, col)
MAX_OBJECTS = 3

# Object side in pixels as a fraction of the image side: 9 and 6 px at 32x32, 18 and 12 at 64x64.
# A large object plus the 1 px gutter kept between neighbouring cells just fits the narrowest cell.
SIZE_FRACTION = {'small': 0.19, 'large': 0.28}

# Caption tables. `vocabulary()` is derived from these, so every caption word must come from here.
SHAPE_WORDS = {'circle': ('circle', 'disk'), 'square': ('square',), 'triangle': ('triangle',)}
SIZE_WORDS = {'small': ('small', 'little', 'tiny'), 'large': ('large', 'big')}
POSITION_WORDS = {
  'top left': (
    'in the top left',
    'at the top left',
    'in the upper left',
    'in the top left corner',
    'in the upper left corner',
  ),
  'top': ('at the top', 'in the top middle', 'at the top center'),
  'top right': (
    'in the top right',
    'at the top right',
    'in the upper right',
    'in the top right corner',
    'in the upper right corner',
  ),
  'left': ('on the left', 'at the left', 'on the left side'),
  'middle': ('in the middle', 'in the center', 'at the center'),
  'right': ('on the right', 'at the right', 'on the right side'),
  'bottom left': (
    'in the bottom left',
    'at the bottom left',
    'in the lower left',
    'in the bottom left corner',
    'in the lower left corner',
  ),
  'bottom': ('at the bottom', 'in the bottom middle', 'at the bottom center'),
  'bottom right': (
    'in the bottom right',
    'at the bottom right',
    'in the lower right',
    'in the bottom right corner',
    'in the lower right corner',
  ),
}
OBJECT_TEMPLATES = (
  'a {size} {color} {shape} {position}',
  'a {size} {color} {shape} located {position}',
  'one {size} {color} {shape} {position}',
)
JOINERS = ('and', 'and also', 'as well as')
SCENE_TEMPLATES = ('{}', 'there is {}', 'a picture of {}', 'an image of {}', 'a drawing of {}', 'a scene with {}')


@dataclasses.dataclass(frozen=True)
class ShapeObject:
  shape: str
  color: str
  size: str
  position: str


@dataclasses.dataclass(frozen=True)
class Scene:
  """Objects plus the parameters of rendering (all in image-size independent units)."""

  objects: tuple[ShapeObject, ...]
  jitter: tuple[tuple[int, int], ...]  # (dy, dx) pixel offset per object, in {-1, 0, 1}
  bg_colors: tuple[tuple[float, float, float], tuple[float, float, float]]  # gradient ends
  bg_angle: float  # gradient direction in radians
  blotches: tuple[tuple[float, float, float, tuple[float, float, float]], ...]
  # blotch = (centre y, centre x, sigma) as fractions of the image side, and an RGB amplitude.


# Orthonormal basis of the chroma plane (orthogonal to grey (1, 1, 1)).
_CHROMA = np.array([[2.0, -1.0, -1.0], [0.0, 1.0, -1.0]]) / np.array([[np.sqrt(6.0)], [np.sqrt(2.0)]])
_GREY_RANGE = (85.0, 175.0)  # background luminance bounds
_MAX_CHROMA = 45.0  # background chroma bound: channel spread <= 1.64 * 45 = 74, palette >= 160


def _muted_color(rng: np.random.Generator) -> tuple[float, float, float]:
  grey = rng.uniform(100.0, 160.0)
  hue = rng.uniform(0.0, 2.0 * np.pi)
  chroma = rng.uniform(8.0, 30.0)
  rgb = grey + chroma * (np.cos(hue) * _CHROMA[0] + np.sin(hue) * _CHROMA[1])
  return tuple(float(v) for v in rgb)


def sample_scene(rng: np.random.Generator) -> Scene:
  """Samples 1-3 objects in distinct cells and a background."""
  n = int(rng.integers(1, MAX_OBJECTS + 1))
  cells = rng.choice(len(POSITIONS), size=n, replace=False)
  objects = tuple(
    ShapeObject(
      shape=SHAPES[rng.integers(len(SHAPES))],
      color=COLOR_NAMES[rng.integers(len(COLOR_NAMES))],
      size=SIZES[rng.integers(len(SIZES))],
      position=POSITIONS[c],
    )
    for c in cells
  )
  jitter = tuple((int(dy), int(dx)) for dy, dx in rng.integers(-1, 2, size=(n, 2)))
  return Scene(objects, jitter, *sample_background(rng))


def sample_background(rng: np.random.Generator) -> tuple:
  """(bg_colors, bg_angle, blotches) of a smooth muted background, as `Scene` holds them."""
  bg_colors = (_muted_color(rng), _muted_color(rng))
  bg_angle = float(rng.uniform(0.0, 2.0 * np.pi))
  blotches = []
  for _ in range(int(rng.integers(1, 4))):
    cy, cx = rng.uniform(0.0, 1.0, size=2)
    sigma = rng.uniform(0.12, 0.3)
    amp = rng.uniform(-15.0, 15.0) + rng.uniform(-12.0, 12.0, size=2) @ _CHROMA
    blotches.append((float(cy), float(cx), float(sigma), tuple(float(v) for v in amp)))
  return bg_colors, bg_angle, tuple(blotches)


def _background(scene: Scene, image_size: int, luminance=None) -> np.ndarray:
  """Smooth muted texture: a linear gradient plus soft gaussian blotches, float (S, S, 3); `luminance`
  (S, S) is added to every channel before the clamp (a texture pattern)."""
  s = image_size
  y, x = (np.mgrid[0:s, 0:s] + 0.5) / s  # pixel centres in [0, 1]
  t = ((x - 0.5) * np.cos(scene.bg_angle) + (y - 0.5) * np.sin(scene.bg_angle)) / np.sqrt(2.0) + 0.5
  c0, c1 = np.array(scene.bg_colors)
  img = c0 + t[..., None] * (c1 - c0)
  for cy, cx, sigma, amp in scene.blotches:
    g = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2.0 * sigma**2))
    img = img + g[..., None] * np.array(amp)
  if luminance is not None:
    img = img + luminance[..., None]
  # Clamp luminance and chroma so the background can never approach a palette colour.
  grey = img.mean(-1, keepdims=True)
  chroma = img - grey
  norm = np.linalg.norm(chroma, axis=-1, keepdims=True)
  chroma *= np.minimum(1.0, _MAX_CHROMA / np.maximum(norm, 1e-6))
  return np.clip(grey, *_GREY_RANGE) + chroma


def _cell_bounds(image_size: int) -> np.ndarray:
  """Allowed pixel range [lo, hi) per grid row/col; the last pixel of each cell is a gutter."""
  edges = np.round(np.arange(4) * image_size / 3).astype(int)
  return np.stack([edges[:-1], edges[1:] - 1], axis=1)


def object_side(size: str, image_size: int) -> int:
  return int(round(SIZE_FRACTION[size] * image_size))


def _shape_mask(shape: str, side: int) -> np.ndarray:
  """Boolean (side, side) mask sampled at pixel centres; the triangle points up."""
  v, u = (np.mgrid[0:side, 0:side] + 0.5) / side
  if shape == 'square':
    return np.ones((side, side), bool)
  if shape == 'circle':
    return (u - 0.5) ** 2 + (v - 0.5) ** 2 <= 0.25
  if shape == 'triangle':
    # Half a pixel of slack so the apex row is not empty.
    return np.abs(u - 0.5) <= 0.5 * v + 0.5 / side
  raise ValueError(f'unknown shape {shape!r}')


def object_box(obj: ShapeObject, jitter: tuple[int, int], image_size: int) -> tuple[int, int, int]:
  """Returns (top, left, side) of the object's square box, inside its cell."""
  side = object_side(obj.size, image_size)
  bounds = _cell_bounds(image_size)
  row, col = POSITION_CELLS[obj.position]
  start = []
  for (lo, hi), d in zip((bounds[row], bounds[col]), jitter):
    centred = lo + (hi - lo - side) // 2
    start.append(int(np.clip(centred + d, lo, hi - side)))
  return start[0], start[1], side


def render(scene: Scene, image_size: int = 32) -> np.ndarray:
  """Renders a scene to a uint8 (S, S, 3) image."""
  img = np.round(_background(scene, image_size)).astype(np.uint8)
  for obj, jitter in zip(scene.objects, scene.jitter):
    top, left, side = object_box(obj, jitter, image_size)
    window = img[top : top + side, left : left + side]
    window[_shape_mask(obj.shape, side)] = COLORS[obj.color]
  return img


def caption(scene: Scene, rng: np.random.Generator) -> str:
  """A random caption naming every object by size, colour, shape and position."""

  def pick(options):
    return options[rng.integers(len(options))]

  order = rng.permutation(len(scene.objects))
  phrases = [
    pick(OBJECT_TEMPLATES).format(
      size=pick(SIZE_WORDS[o.size]),
      color=o.color,
      shape=pick(SHAPE_WORDS[o.shape]),
      position=pick(POSITION_WORDS[o.position]),
    )
    for o in (scene.objects[i] for i in order)
  ]
  text = phrases[0]
  for phrase in phrases[1:]:
    text = f'{text} {pick(JOINERS)} {phrase}'
  return pick(SCENE_TEMPLATES).format(text)


def vocabulary() -> list[str]:
  """Every word any caption can contain, sorted."""
  texts = [*OBJECT_TEMPLATES, *JOINERS, *SCENE_TEMPLATES, *COLOR_NAMES]
  for table in (SHAPE_WORDS, SIZE_WORDS, POSITION_WORDS):
    texts += [w for options in table.values() for w in options]
  words = set()
  for text in texts:
    for word in text.split():
      if not word.startswith('{'):
        words.add(word)
  return sorted(words)


def encode_objects(objects: tuple[ShapeObject, ...]) -> np.ndarray:
  """int32 (MAX_OBJECTS, 4) rows [shape, color, size, position] indices, padded with -1."""
  out = np.full((MAX_OBJECTS, 4), -1, np.int32)
  for i, o in enumerate(objects):
    out[i] = (SHAPES.index(o.shape), COLOR_NAMES.index(o.color), SIZES.index(o.size), POSITIONS.index(o.position))
  return out


def scene_from_objects(objects: np.ndarray, num_objects: int) -> tuple[ShapeObject, ...]:
  """Decodes the integer ground truth of `make_example` back to ShapeObjects."""
  return tuple(
    ShapeObject(shape=SHAPES[s], color=COLOR_NAMES[c], size=SIZES[z], position=POSITIONS[p])
    for s, c, z, p in np.asarray(objects)[: int(num_objects)].tolist()
  )


def make_example(seed: int, index: int, image_size: int = 32) -> dict:
  """One example, a deterministic function of (seed, index) alone."""
  rng = np.random.default_rng([seed, index])
  scene = sample_scene(rng)
  return {
    'image': render(scene, image_size),
    'caption': caption(scene, rng),
    'objects': encode_objects(scene.objects),
    'num_objects': len(scene.objects),
  }
