"""Shape scenes: the captioned-shapes variant in which parallel decoding errs (docs/design.md §11).

Pure numpy, like `shapes.py`, whose palette, shapes, sizes, 3x3 cells and backgrounds it reuses. What it adds
is what a sampler that decides many tokens at once gets wrong:
  - 3-6 objects, each a (shape, colour) pair that occurs once per scene, so captions bind attributes
    ("a small hollow red square ... and a large solid blue square ...");
  - a fill: 'solid' or 'hollow' (an outline: a pattern spread over several tokens that must agree);
  - a background texture named in the caption: 'plain', 'striped' or 'checkered' (fine detail everywhere,
    what FAS is meant to keep);
  - positions given three ways: 'absolute' (a cell: "in the top left"), 'relational' to another object of
    the scene ("left of the blue square": same row, any column to its left; 'above': same column) or 'free'
    (no position). Free and relational objects leave the generator a choice of cells, and tokens decided in
    parallel can make different choices: an object drawn twice, or half here and half there.
At 48 px the grid is 12 x 12 tokens of 4 x 4 px (a tokenizer downsampling 4x), a cell 4 x 4 tokens, and a
large object spans about 3 x 3 tokens.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tcts_jax.data import shapes

FILLS = ('solid', 'hollow')
TEXTURES = ('plain', 'striped', 'checkered')
POSITION_MODES = ('absolute', 'relational', 'free')
RELATIONS = ('left of', 'right of', 'above', 'below')
MIN_OBJECTS, MAX_OBJECTS = 3, 6
# Probability of each position mode; a 'relational' object without a possible reference becomes 'absolute'.
MODE_PROBS = (0.4, 0.35, 0.25)
TEXTURE_AMPLITUDE = 12.0  # luminance step of the stripes and checks (the background stays far from the palette)
TEXTURE_PERIOD = 1.0 / 6.0  # of the image side: 8 px at 48 px, two tokens
OUTLINE = 1.0 / 24.0  # hollow objects' outline width, of the image side: 2 px at 48 px

# Caption tables; `vocabulary()` is derived from these.
FILL_WORDS = {'solid': ('solid', 'filled'), 'hollow': ('hollow', 'outlined')}
TEXTURE_WORDS = {'plain': ('plain',), 'striped': ('striped',), 'checkered': ('checkered', 'checked')}
RELATION_WORDS = {
  'left of': ('left of', 'to the left of'),
  'right of': ('right of', 'to the right of'),
  'above': ('above',),
  'below': ('below', 'under'),
}
OBJECT_TEMPLATE = 'a {size} {fill} {color} {shape}'
SCENE_TEMPLATE = '{objects} on a {texture} background'

# Ground-truth row of an object, as stored in the dataset: indices into the tables above (-1: none).
COLUMNS = ('shape', 'color', 'size', 'fill', 'cell', 'mode', 'relation', 'reference')


@dataclasses.dataclass(frozen=True)
class SceneObject:
  shape: str
  color: str
  size: str
  fill: str
  position: str  # the cell, a name of shapes.POSITIONS (what `shapes.object_box` reads)
  mode: str  # how the caption places it: a name of POSITION_MODES
  relation: str = ''  # for mode 'relational': a name of RELATIONS ...
  reference: int = -1  # ... to this object of the scene


@dataclasses.dataclass(frozen=True)
class Scene:
  objects: tuple[SceneObject, ...]
  jitter: tuple[tuple[int, int], ...]  # (dy, dx) per object, in {-1, 0, 1}
  bg_colors: tuple
  bg_angle: float
  blotches: tuple
  texture: str
  texture_vertical: bool  # stripes run top to bottom (vary along x)
  texture_phase: tuple[float, float]  # (y, x) offset as a fraction of the period


def relation(cell_a: int, cell_b: int) -> str:
  """The relation of cell a to cell b ('' if they share neither row nor column, or are the same)."""
  (ra, ca), (rb, cb) = divmod(cell_a, 3), divmod(cell_b, 3)
  if ra == rb and ca != cb:
    return 'left of' if ca < cb else 'right of'
  if ca == cb and ra != rb:
    return 'above' if ra < rb else 'below'
  return ''


def holds(rel: str, cell_a: int, cell_b: int) -> bool:
  """Whether object a in `cell_a` is `rel` object b in `cell_b` (same row / column, strict order)."""
  return bool(rel) and relation(cell_a, cell_b) == rel


def sample_scene(rng: np.random.Generator) -> Scene:
  n = int(rng.integers(MIN_OBJECTS, MAX_OBJECTS + 1))
  cells = rng.choice(len(shapes.POSITIONS), size=n, replace=False)
  kinds = rng.choice(len(shapes.SHAPES) * len(shapes.COLOR_NAMES), size=n, replace=False)
  sizes = rng.integers(len(shapes.SIZES), size=n)
  fills = rng.integers(len(FILLS), size=n)
  modes = [POSITION_MODES[m] for m in rng.choice(len(POSITION_MODES), size=n, p=MODE_PROBS)]
  # A relational object refers to one in its row or column that is itself placed otherwise (no chains).
  refs, rels = [-1] * n, [''] * n
  for i in range(n):
    if modes[i] != 'relational':
      continue
    options = [j for j in range(n) if j != i and modes[j] != 'relational' and relation(cells[i], cells[j])]
    if not options:
      modes[i] = 'absolute'
      continue
    refs[i] = int(options[rng.integers(len(options))])
    rels[i] = relation(cells[i], cells[refs[i]])
  objects = tuple(
    SceneObject(
      shape=shapes.SHAPES[kinds[i] // len(shapes.COLOR_NAMES)],
      color=shapes.COLOR_NAMES[kinds[i] % len(shapes.COLOR_NAMES)],
      size=shapes.SIZES[sizes[i]],
      fill=FILLS[fills[i]],
      position=shapes.POSITIONS[cells[i]],
      mode=modes[i],
      relation=rels[i],
      reference=refs[i],
    )
    for i in range(n)
  )
  jitter = tuple((int(dy), int(dx)) for dy, dx in rng.integers(-1, 2, size=(n, 2)))
  background = shapes.sample_background(rng)
  texture = TEXTURES[rng.integers(len(TEXTURES))]
  vertical = bool(rng.integers(2))
  phase = tuple(float(p) for p in rng.uniform(0.0, 1.0, size=2))
  return Scene(objects, jitter, *background, texture, vertical, phase)


def texture_luminance(scene: Scene, image_size: int) -> np.ndarray:
  """(S, S) luminance offsets of the scene's texture: square waves of +-TEXTURE_AMPLITUDE."""
  s = image_size
  period = TEXTURE_PERIOD * s
  y, x = np.mgrid[0:s, 0:s] + 0.5

  def wave(u, phase):
    return np.where(np.floor(2.0 * (u / period + phase)) % 2 == 0, 1.0, -1.0)

  if scene.texture == 'plain':
    return np.zeros((s, s))
  if scene.texture == 'striped':
    return TEXTURE_AMPLITUDE * (
      wave(x, scene.texture_phase[1]) if scene.texture_vertical else wave(y, scene.texture_phase[0])
    )
  return TEXTURE_AMPLITUDE * wave(x, scene.texture_phase[1]) * wave(y, scene.texture_phase[0])


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
  """4-neighbour erosion `steps` times (outside the array counts as empty)."""
  for _ in range(steps):
    p = np.pad(mask, 1)
    mask = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
  return mask


def outline_width(image_size: int) -> int:
  return max(1, int(round(OUTLINE * image_size)))


def object_mask(shape: str, fill: str, side: int, image_size: int) -> np.ndarray:
  """(side, side) bool: the renderer's shape mask, or its outline for hollow objects."""
  mask = shapes._shape_mask(shape, side)  # pylint: disable=protected-access
  return mask & ~erode(mask, outline_width(image_size)) if fill == 'hollow' else mask


def render(scene: Scene, image_size: int = 48) -> np.ndarray:
  """uint8 (S, S, 3): the textured background, then every object in its exact palette colour."""
  background = shapes._background(scene, image_size, texture_luminance(scene, image_size))  # pylint: disable=protected-access
  img = np.round(background).astype(np.uint8)
  for obj, jitter in zip(scene.objects, scene.jitter):
    top, left, side = shapes.object_box(obj, jitter, image_size)
    window = img[top : top + side, left : left + side]
    window[object_mask(obj.shape, obj.fill, side, image_size)] = shapes.COLORS[obj.color]
  return img


def caption(scene: Scene, rng: np.random.Generator) -> str:
  """Every object with size, fill, colour and shape, placed as its mode says; then the background."""

  def pick(options):
    return options[rng.integers(len(options))]

  def name(o: SceneObject) -> str:
    return f'{o.color} {pick(shapes.SHAPE_WORDS[o.shape])}'

  def phrase(o: SceneObject) -> str:
    text = OBJECT_TEMPLATE.format(
      size=pick(shapes.SIZE_WORDS[o.size]),
      fill=pick(FILL_WORDS[o.fill]),
      color=o.color,
      shape=pick(shapes.SHAPE_WORDS[o.shape]),
    )
    if o.mode == 'absolute':
      return f'{text} {pick(shapes.POSITION_WORDS[o.position])}'
    if o.mode == 'relational':
      return f'{text} {pick(RELATION_WORDS[o.relation])} the {name(scene.objects[o.reference])}'
    return text

  # References before the objects placed relative to them; otherwise a random order.
  first = [i for i in rng.permutation(len(scene.objects)) if scene.objects[i].mode != 'relational']
  second = [i for i in rng.permutation(len(scene.objects)) if scene.objects[i].mode == 'relational']
  objects = ' and '.join(phrase(scene.objects[i]) for i in first + second)
  return SCENE_TEMPLATE.format(objects=objects, texture=pick(TEXTURE_WORDS[scene.texture]))


def vocabulary() -> list[str]:
  """Every word any caption can contain, sorted."""
  texts = [OBJECT_TEMPLATE, SCENE_TEMPLATE, 'and the', *shapes.COLOR_NAMES]
  for table in (
    shapes.SHAPE_WORDS,
    shapes.SIZE_WORDS,
    shapes.POSITION_WORDS,
    FILL_WORDS,
    TEXTURE_WORDS,
    RELATION_WORDS,
  ):
    texts += [w for options in table.values() for w in options]
  return sorted({w for text in texts for w in text.split() if not w.startswith('{')})


def encode_objects(objects: tuple[SceneObject, ...]) -> np.ndarray:
  """int32 (MAX_OBJECTS, len(COLUMNS)) ground-truth rows (see COLUMNS), padded with -1."""
  out = np.full((MAX_OBJECTS, len(COLUMNS)), -1, np.int32)
  for i, o in enumerate(objects):
    out[i] = (
      shapes.SHAPES.index(o.shape),
      shapes.COLOR_NAMES.index(o.color),
      shapes.SIZES.index(o.size),
      FILLS.index(o.fill),
      shapes.POSITIONS.index(o.position),
      POSITION_MODES.index(o.mode),
      RELATIONS.index(o.relation) if o.relation else -1,
      o.reference,
    )
  return out


def decode_objects(rows: np.ndarray, num_objects: int) -> tuple[SceneObject, ...]:
  """The inverse of `encode_objects` for the first `num_objects` rows."""
  out = []
  for shape, color, size, fill, cell, mode, rel, ref in np.asarray(rows)[: int(num_objects)].tolist():
    out.append(
      SceneObject(
        shape=shapes.SHAPES[shape],
        color=shapes.COLOR_NAMES[color],
        size=shapes.SIZES[size],
        fill=FILLS[fill],
        position=shapes.POSITIONS[cell],
        mode=POSITION_MODES[mode],
        relation=RELATIONS[rel] if rel >= 0 else '',
        reference=ref,
      )
    )
  return tuple(out)


def make_example(seed: int, index: int, image_size: int = 48) -> dict:
  """One example, a deterministic function of (seed, index) alone."""
  rng = np.random.default_rng([seed, index])
  scene = sample_scene(rng)
  return {
    'image': render(scene, image_size),
    'caption': caption(scene, rng),
    'objects': encode_objects(scene.objects),
    'num_objects': len(scene.objects),
    'texture': TEXTURES.index(scene.texture),
  }
