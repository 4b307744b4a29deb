"""Embedded compositional alignment: an exact checker of generated images for the captioned shapes.

GenEval / SOA-style. The procedural dataset (`tcts_jax.data.shapes`) knows the truth of every caption,
so an image is scored against its caption by detecting the objects in the pixels and comparing them
with the ground-truth scene. Pure numpy (no scipy); ~1-4 ms per image at 32-64 px.

Detection (`detect_objects`); generated images are not exact (VQ decoder, generative model: colours
a little off, edges blurred), so every step works on estimated coverage rather than exact colours:
  1. Local background `b`: the background is smooth and muted, so pixels far from every palette colour
     (and outside a guard band around near-palette cores, where blurred edges live) are averaged by a
     normalised box filter.
  2. Palette quantisation by relative distance: pixel `p` takes the palette colour `c` minimising
     `|p - c| / |c - b|`, if that ratio is below 1/2. For a blurred edge pixel `p = a c + (1 - a) b` the
     ratio is `1 - a`, so the rule keeps the pixels more than half covered by an object whatever the
     local background (a fixed RGB radius would erode objects on backgrounds far from their colour and
     grow them on near ones). A colour offset only adds `|offset| / |c - b|`, and `|c - b| >= ~80` here.
  3. 4-connected components per colour (label propagation with pointer jumping). Components smaller
     than a third of a small object's box, in pixels and in coverage mass (which blur keeps), are
     specks and dropped. A component too big for one object
     (same-colour neighbours fused across the 1 px gutter by blur) is cut at the grid lines: the
     dataset puts at most one object per cell.
  4. Per component: colour; position = 3x3 cell of its centroid (the renderer's cell edges); shape and
     size together = the nearest template (least squares on the coverage `(p - b).(c - b) / |c - b|^2`
     in a window around the component) among the renderer's own masks of the 3 shapes x 2 sizes, at
     offsets of +-1 px and 4 blur levels. Plain rules on the thresholded mask (fill ratio of the bounding
     box, width of the top rows) break down under blur at 32 px, where a 6 px circle is a 6 px square
     minus its four corner pixels; the template fit uses the soft edges and stays right.

Scoring (`score_image`, `score_batch`; ground-truth objects occupy distinct cells):
  - object_accuracy (SOA-I-like): fraction of ground-truth objects for which some detection has the
    same colour, shape, size and cell (one detection per cell can only match the one object there, so
    this matching is one-to-one by construction);
  - all_correct (GenEval-like): every ground-truth object matched and no extra detection;
  - count_correct: exactly as many detections as ground-truth objects;
  - {shape,color,size,position}_accuracy: ground-truth objects and detections are paired one-to-one,
    greedily by the number of agreeing attributes (ties: the detection whose centroid is nearest the
    ground-truth cell centre); an attribute is right if the paired detection has it. A ground-truth
    object left without a detection (fewer detections than objects) is wrong on every attribute.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from tcts_jax.data import shapes

__all__ = [
  'Detection',
  'detect_objects',
  'score_detections',
  'score_image',
  'score_batch',
  'blur_image',
  'chance_level',
  'calibration_report',
]

_PALETTE = shapes.PALETTE.astype(np.float32)  # (K, 3)

# Relative distance |p - c| / |c - b| below which a pixel is colour c: more than half covered.
REL_THRESHOLD = 0.5
# Background seeds are farther than this from every palette colour. Real backgrounds stay >= ~80 from
# the palette (nearest: dark purplish grey); the guard band around object cores removes blurred edges.
_BG_MIN_DIST = 70.0
# Object cores (used only to keep edges out of the background estimate): more than ~60% covered even
# on the nearest background.
_CORE_DIST = 30.0
# Blur levels of the shape templates, in pixels at 32 px (scaled with the image size).
_TEMPLATE_BLURS = (0.0, 0.5, 0.8, 1.1, 1.5)
_MIN_AREA_FRACTION = 1.0 / 3.0  # of a small object's square box
_MERGED_FRACTION = 1.35  # a component side beyond this times a large object's side is several objects
_ATTRS = ('shape', 'color', 'size', 'position')  # the column order of the ground-truth rows
_OBJECT_LEVEL = ('object_accuracy',) + tuple(f'{a}_accuracy' for a in _ATTRS)


@dataclasses.dataclass(frozen=True)
class Detection:
  """One detected object; attribute fields are indices into the `shapes` tables."""

  shape: int  # index into shapes.SHAPES
  color: int  # index into shapes.COLOR_NAMES
  size: int  # index into shapes.SIZES
  position: int  # index into shapes.POSITIONS (3x3 cell of the centroid, row-major)
  area: int  # pixels
  centroid: tuple[float, float]  # (y, x) in pixels, pixel centres at +0.5
  bbox: tuple[int, int, int, int]  # (top, left, height, width)
  image_size: int
  fill: int = 0  # index into scenes.FILLS when the templates have fills (shape scenes), else 0

  def as_row(self) -> np.ndarray:
    """[shape, color, size, position] like the rows of `make_example()['objects']`."""
    return np.array([self.shape, self.color, self.size, self.position], np.int32)

  def describe(self) -> str:
    return (
      f'{shapes.SIZES[self.size]} {shapes.COLOR_NAMES[self.color]} '
      f'{shapes.SHAPES[self.shape]} {shapes.POSITIONS[self.position]}'
    )


# ----------------------------------------------------------------------------------------- helpers


def _as_rgb_float(image) -> np.ndarray:
  """(S, S, 3) RGB -> float32 in [0, 255]. Float images with values <= 1 are taken to be in [0, 1]."""
  img = np.asarray(image)
  if img.ndim != 3 or img.shape[-1] != 3 or img.shape[0] != img.shape[1]:
    raise ValueError(f'expected a square (S, S, 3) RGB image, got shape {img.shape}')
  img = img.astype(np.float32)
  if np.issubdtype(np.asarray(image).dtype, np.floating) and img.max() <= 1.0:
    img = img * 255.0
  return np.clip(img, 0.0, 255.0)


def _box_sum(x: np.ndarray, r: int) -> np.ndarray:
  """Sum over the (2r+1)^2 window around each pixel (zero outside), via an integral image."""
  h, w = x.shape[:2]
  pad = np.zeros((h + 2 * r + 1, w + 2 * r + 1) + x.shape[2:], np.float64)
  pad[r + 1 : r + 1 + h, r + 1 : r + 1 + w] = x
  c = pad.cumsum(0).cumsum(1)
  k = 2 * r + 1
  return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
  return _box_sum(mask.astype(np.float64), r) > 0.5


def _local_background(img: np.ndarray, dist: np.ndarray) -> np.ndarray:
  """Smooth estimate of the background colour at every pixel, (H, W, 3)."""
  size = img.shape[0]
  dmin = dist.min(-1)
  # Blurred edges sit between the core and the background: keep a guard band out of the estimate.
  seeds = (dmin > _BG_MIN_DIST) & ~_dilate(dmin < _CORE_DIST, max(1, round(2 * size / 32)))
  if not seeds.any():  # nothing looks like background: a neutral grey keeps ratios meaningful
    return np.full_like(img, 128.0)
  r = max(2, size // 4)
  count = _box_sum(seeds.astype(np.float64), r)
  total = _box_sum(img * seeds[..., None], r)
  fallback = img[seeds].mean(0)
  return np.where(count[..., None] > 0, total / np.maximum(count, 1.0)[..., None], fallback)


def _sq_dist_to_palette(x: np.ndarray) -> np.ndarray:
  """|x - c|^2 for every palette colour c, (..., K), via dot products (the hot spot)."""
  return np.maximum((x * x).sum(-1, keepdims=True) - 2.0 * x @ _PALETTE.T + (_PALETTE * _PALETTE).sum(-1), 0.0)


def _quantise(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(H, W) palette index per pixel (-1 for background) and (H, W, K) coverage estimates."""
  dist = np.sqrt(_sq_dist_to_palette(img))  # (H, W, K)
  bg = _local_background(img, dist).astype(np.float32)
  contrast2 = np.maximum(_sq_dist_to_palette(bg), 1.0)  # |c - b|^2
  rel = dist / np.sqrt(contrast2)
  k = rel.argmin(-1)
  classes = np.where(np.take_along_axis(rel, k[..., None], -1)[..., 0] < REL_THRESHOLD, k, -1)
  # Coverage by colour c: projection of p - b on c - b. Linear, so pixel noise averages out (a
  # clipped 1 - rel would bias every background pixel upwards).
  d = img - bg
  alpha = (d @ _PALETTE.T - (d * bg).sum(-1, keepdims=True)) / contrast2
  return classes, np.clip(alpha, -0.5, 1.5)


def _label(classes: np.ndarray) -> np.ndarray:
  """4-connected components of equal non-negative classes: (H, W) labels, -1 for background.

  Each pixel starts with its own flat index; labels propagate as minima between equal-class
  neighbours, and pointer jumping (a label is the index of a pixel of the same component) shortcuts
  long paths, so it converges in a few dozen vectorised steps on these small images.
  """
  h, w = classes.shape
  fg = classes >= 0
  lab = np.where(fg, np.arange(h * w).reshape(h, w), -1)
  same_v = fg[1:] & (classes[1:] == classes[:-1])
  same_h = fg[:, 1:] & (classes[:, 1:] == classes[:, :-1])
  fg_flat = fg.ravel()
  while True:
    new = lab.copy()
    m = np.minimum(lab[1:], lab[:-1])
    new[1:] = np.where(same_v, np.minimum(new[1:], m), new[1:])
    new[:-1] = np.where(same_v, np.minimum(new[:-1], m), new[:-1])
    m = np.minimum(new[:, 1:], new[:, :-1])
    new[:, 1:] = np.where(same_h, np.minimum(new[:, 1:], m), new[:, 1:])
    new[:, :-1] = np.where(same_h, np.minimum(new[:, :-1], m), new[:, :-1])
    flat = new.ravel()
    flat[fg_flat] = flat[flat[fg_flat]]  # pointer jumping
    if np.array_equal(new, lab):
      return lab
    lab = new


def _cell_edges(size: int) -> np.ndarray:
  """The renderer's inner grid lines: pixel p is in row/col `searchsorted(edges, p, 'right')`."""
  return np.round(np.arange(1, 3) * size / 3)


def _cell(y: float, x: float, size: int) -> int:
  """Row-major 3x3 cell index of a point (pixel centres at +0.5)."""
  edges = _cell_edges(size)
  return int(np.searchsorted(edges, y, side='right') * 3 + np.searchsorted(edges, x, side='right'))


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
  """Separable gaussian blur of a 2-d array, zero outside (templates have a zero margin)."""
  if sigma == 0:
    return x
  r = int(np.ceil(3 * sigma))
  k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  k /= k.sum()
  x = np.apply_along_axis(np.convolve, 0, x, k, mode='same')
  return np.apply_along_axis(np.convolve, 1, x, k, mode='same')


@functools.lru_cache(maxsize=8)
def _templates(size: int) -> tuple[int, np.ndarray, np.ndarray]:
  """Coverage templates of every (shape, size) at small offsets and blur levels.

  Returns the canvas side T, (M, 2) [shape, size] indices and (M, T, T) templates. Each template is
  the renderer's own mask, placed with its centre at T/2 + (dy, dx), dy, dx in {-1, 0, 1}, and
  blurred by one of `_TEMPLATE_BLURS` (generated images are softer than the renders).
  """
  t = shapes.object_side('large', size) + 5
  keys, temps = [], []
  for si, shape in enumerate(shapes.SHAPES):
    for zi, z in enumerate(shapes.SIZES):
      side = shapes.object_side(z, size)
      # The renderer's mask, sampled at pixel centres (the definition of each shape).
      mask = shapes._shape_mask(shape, side).astype(np.float64)  # pylint: disable=protected-access
      o = (t - side) // 2
      for sigma in _TEMPLATE_BLURS:
        for dy in (-1, 0, 1):
          for dx in (-1, 0, 1):
            canvas = np.zeros((t, t))
            canvas[o + dy : o + dy + side, o + dx : o + dx + side] = mask
            keys.append((si, zi))
            temps.append(_blur(canvas, sigma * size / 32))
  return t, np.array(keys), np.stack(temps)


def _coverage_mass(mask: np.ndarray, classes: np.ndarray, cover: np.ndarray, size: int) -> float:
  """Coverage summed over a component and a ring of background around it (2 px at 32 px).

  Blur moves coverage outwards but keeps its sum, so a heavily blurred object whose more-than-half
  covered core is small still weighs about its true area, while an isolated speck does not.
  """
  ring = _dilate(mask, max(1, round(2 * size / 32))) & (mask | (classes < 0))
  return float(np.clip(cover[ring], 0.0, 1.0).sum())


def _classify_component(mask: np.ndarray, soft: np.ndarray, color: int, size: int, templates) -> Detection:
  """Attributes of one component; `soft` is the coverage of its colour (0 on other objects); `templates`
  as `_templates` returns them, whose keys may carry a third column, the fill."""
  ys, xs = np.nonzero(mask)
  top, left = ys.min(), xs.min()
  h, w = ys.max() - top + 1, xs.max() - left + 1
  cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
  # Shape and size together: the nearest template (sum of squared differences of the coverage
  # in a window centred on the bounding box). Blur-robust: a blurred square still matches a
  # blurred square better than a blurred circle, where fill-ratio rules on the mask flip.
  t, keys, temps = templates
  t0 = int(round(top + 0.5 * h - 0.5 * t))
  l0 = int(round(left + 0.5 * w - 0.5 * t))
  patch = np.pad(soft, t)[t0 + t : t0 + 2 * t, l0 + t : l0 + 2 * t]
  best = keys[int(((temps - patch) ** 2).sum((1, 2)).argmin())]
  return Detection(
    shape=int(best[0]),
    color=int(color),
    size=int(best[1]),
    position=_cell(cy, cx, size),
    area=len(ys),
    centroid=(float(cy), float(cx)),
    bbox=(int(top), int(left), int(h), int(w)),
    image_size=int(size),
    fill=int(best[2]) if len(best) > 2 else 0,
  )


# --------------------------------------------------------------------------------------------- API


def detect_objects(image, templates=None) -> list[Detection]:
  """Detects the palette-coloured objects of a square RGB image (uint8 (S, S, 3), any S >= 16).

  Returns `Detection`s sorted by cell, then colour. See the module docstring for the rules. `templates`
  (default: `_templates(S)`, captioned shapes' 3 shapes x 2 sizes) are the masks components are fitted to.
  """
  return _detect(_as_rgb_float(image), templates)[0]


def _detect(img: np.ndarray, templates=None) -> tuple[list[Detection], np.ndarray]:
  """`detect_objects` of a float image, and its (H, W) palette classes (-1: background)."""
  size = img.shape[0]
  templates = _templates(size) if templates is None else templates
  classes, cover = _quantise(img)
  labels = _label(classes)
  min_area = _MIN_AREA_FRACTION * shapes.object_side('small', size) ** 2
  max_side = _MERGED_FRACTION * shapes.object_side('large', size)
  cell_rows = np.searchsorted(_cell_edges(size), np.arange(size), side='right')
  cell_of_pixel = cell_rows[:, None] * 3 + cell_rows[None, :]

  out = []
  flat = labels.ravel()
  ids, counts = np.unique(flat[flat >= 0], return_counts=True)
  for comp, count in zip(ids, counts):
    mask = labels == comp
    color = int(classes.flat[comp])  # a label is the flat index of one of its pixels
    if count < min_area and _coverage_mass(mask, classes, cover[..., color], size) < min_area:
      continue  # a speck
    ys, xs = np.nonzero(mask)
    parts = [mask]
    if max(np.ptp(ys), np.ptp(xs)) + 1 > max_side:
      # Several objects fused by blur; the dataset has at most one per cell: cut at the grid lines.
      parts = [mask & (cell_of_pixel == c) for c in np.unique(cell_of_pixel[mask])]
    # Coverage of this colour, with other objects zeroed so a neighbour cannot leak into the fit.
    soft = np.where(mask | (classes < 0), cover[..., color], 0.0)
    for part in parts:
      if part.sum() >= min_area or _coverage_mass(part, classes, soft, size) >= min_area:
        out.append(_classify_component(part, np.where(mask & ~part, 0.0, soft), color, size, templates))
  out.sort(key=lambda d: (d.position, d.color, -d.area))
  return out, classes


def score_detections(detections: list[Detection], objects, num_objects) -> dict:
  """Scores detections against the ground truth (see the module docstring for the rules).

  objects: rows [shape, color, size, position] of indices, as `make_example()['objects']`; the first
  `num_objects` rows are used. Returns floats object_accuracy, all_correct, count_correct,
  num_detected, num_objects, {shape,color,size,position}_accuracy, and under 'per_object' boolean
  (num_objects,) arrays: 'matched' (exact match) and, from the paired detection, 'shape', 'color',
  'size', 'position'.
  """
  n = int(num_objects)
  gt = np.asarray(objects, np.int64).reshape(-1, 4)[:n]
  det = np.array([d.as_row() for d in detections], np.int64).reshape(-1, 4)
  agree = gt[:, None, :] == det[None, :, :]  # (G, D, 4)
  matched = agree.all(-1).any(1)

  # Greedy one-to-one pairing: most agreeing attributes first; ties go to the detection nearest the
  # ground-truth cell centre (distance in image sides, weighted below one attribute).
  paired = np.zeros((n, 4), bool)
  if n and len(detections):
    rc = np.array([divmod(int(p), 3) for p in gt[:, 3]])
    centres = (rc + 0.5) / 3.0
    cents = np.array([d.centroid for d in detections]) / np.array([[d.image_size] for d in detections])
    dist = np.linalg.norm(centres[:, None] - cents[None], axis=-1)
    score = agree.sum(-1) - 0.5 * np.minimum(dist, 1.0)
    free_g, free_d = set(range(n)), set(range(len(detections)))
    for flat in np.argsort(-score, axis=None, kind='stable'):
      g, d = divmod(int(flat), len(detections))
      if g in free_g and d in free_d:
        paired[g] = agree[g, d]
        free_g.discard(g)
        free_d.discard(d)
        if not free_g or not free_d:
          break

  def mean(x):
    return float(np.mean(x)) if n else 1.0

  result = {
    'object_accuracy': mean(matched),
    'all_correct': float(bool(matched.all()) and len(detections) == n),
    'count_correct': float(len(detections) == n),
    'num_detected': float(len(detections)),
    'num_objects': float(n),
  }
  per_object = {'matched': matched}
  for i, name in enumerate(_ATTRS):
    result[f'{name}_accuracy'] = mean(paired[:, i])
    per_object[name] = paired[:, i]
  result['per_object'] = per_object
  return result


def score_image(image, objects, num_objects) -> dict:
  """Detects the objects of `image` and scores them against the ground truth (`score_detections`)."""
  return score_detections(detect_objects(image), objects, num_objects)


def score_batch(images, objects, num_objects, detections=None) -> dict:
  """Scores a batch: images (N, S, S, 3) uint8, objects (N, MAX_OBJECTS, 4), num_objects (N,).

  Returns the means and, under 'per_image', a dict of (N,) arrays of the `score_detections` values.
  Object-level accuracies (object and per-attribute) are pooled over all ground-truth objects (each
  object counts once, as in SOA-I); all_correct, count_correct and num_detected are means over
  images (as in GenEval). `detections` (per-image `detect_objects` results) skips detection, e.g. to
  rescore the same images against other captions.
  """
  objects = np.asarray(objects)
  num_objects = np.asarray(num_objects).reshape(-1)
  if detections is None:
    detections = [detect_objects(im) for im in images]
  if not len(detections) == len(objects) == len(num_objects):
    raise ValueError(
      f'batch sizes differ: {len(detections)} images, {len(objects)} objects, {len(num_objects)} num_objects'
    )
  rows = [score_detections(d, o, k) for d, o, k in zip(detections, objects, num_objects)]
  per_image = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != 'per_object'}
  weights = per_image['num_objects']
  out = {}
  for k, v in per_image.items():
    if k in _OBJECT_LEVEL:
      out[k] = float((v * weights).sum() / max(weights.sum(), 1.0))
    elif k != 'num_objects':
      out[k] = float(v.mean())
  out['per_image'] = per_image
  return out


# ----------------------------------------------------------------------------------- calibration


def blur_image(image, sigma: float) -> np.ndarray:
  """Gaussian blur of a uint8 RGB image (reflecting borders), rounded back to uint8."""
  x = np.asarray(image, np.float64)
  if sigma > 0:
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
      pad = [(0, 0)] * 3
      pad[axis] = (r, r)
      p = np.pad(x, pad, mode='reflect')
      x = sum(k[i] * np.take(p, np.arange(i, i + x.shape[axis]), axis=axis) for i in range(2 * r + 1))
  return np.clip(np.round(x), 0, 255).astype(np.uint8)


def chance_level() -> dict:
  """Analytic chance of object_accuracy and all_correct for captions of independent scenes.

  A caption object (uniform shape, colour, size; cell uniform) is matched by an independent scene iff
  that scene has an object in the same cell, probability E[n] / 9 = 2 / 9 (n uniform in 1..3), with
  the same three attributes, probability 1 / (3 * 6 * 2): 1 / 162 ~ 0.62 %. all_correct needs equal
  counts and identical scenes: sum over n of P(both n) / C(9, n) / 36^n = 1 / 2916 + ... ~ 0.034 %.
  count_correct: P(equal counts) = 1 / 3.
  """
  n_shapes, n_colors, n_sizes, n_cells = (
    len(shapes.SHAPES),
    len(shapes.COLOR_NAMES),
    len(shapes.SIZES),
    len(shapes.POSITIONS),
  )
  attrs = n_shapes * n_colors * n_sizes
  counts = np.arange(1, shapes.MAX_OBJECTS + 1)
  p_count = 1.0 / len(counts)
  mean_n = counts.mean()
  all_correct = sum(p_count**2 / math.comb(n_cells, int(n)) / attrs ** int(n) for n in counts)
  return {
    'object_accuracy': float(mean_n / n_cells / attrs),
    'all_correct': float(all_correct),
    'count_correct': float(len(counts) * p_count**2),
  }


def calibration_report(
  num: int = 500, seed: int = 0, image_size: int = 32, blur_sigma: float = 0.5, noise: int = 10
) -> dict:
  """Checker calibration on `num` dataset renders (`make_example(seed, i, image_size)`).

  Returns means (as `score_batch`, without per-image arrays) for
    'real': the renders against their own captions (should be ~100 %);
    'shuffled': the same detections against the next example's ground truth (should be ~chance);
    'blurred': renders blurred by a gaussian of `blur_sigma` px (scaled to 32 px images) plus uniform
      integer RGB noise in [-noise, noise] (should stay ~100 %);
  and 'chance': the analytic chance levels (`chance_level`).
  """
  examples = [shapes.make_example(seed, i, image_size) for i in range(num)]
  images = np.stack([e['image'] for e in examples])
  objects = np.stack([e['objects'] for e in examples])
  counts = np.array([e['num_objects'] for e in examples])
  rng = np.random.default_rng([seed, num, image_size])
  sigma = blur_sigma * image_size / 32
  degraded = [
    np.clip(blur_image(im, sigma).astype(np.int64) + rng.integers(-noise, noise + 1, im.shape), 0, 255).astype(np.uint8)
    for im in images
  ]
  detections = [detect_objects(im) for im in images]

  def means(result):
    return {k: v for k, v in result.items() if k != 'per_image'}

  return {
    'real': means(score_batch(images, objects, counts, detections=detections)),
    'shuffled': means(score_batch(images, np.roll(objects, 1, 0), np.roll(counts, 1), detections=detections)),
    'blurred': means(score_batch(degraded, objects, counts)),
    'chance': chance_level(),
  }
