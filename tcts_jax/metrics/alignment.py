"""Embedded compositional alignment: an exact rule checker for the captioned-shapes dataset.

GenEval / SOA-style: the procedural dataset (`tcts_jax.data.shapes`) knows the truth of every caption, so
a generated image can be scored against its caption by detecting the objects in the pixels and comparing
them with the ground-truth scene. Pure numpy, no scipy.

Detection (`detect_objects`):
  1. Local background. The background is smooth and muted; a pixel far from every palette colour, and
     not next to a pixel close to one, is background. Its local colour `b` at every pixel is the
     normalised box filter of those pixels.
  2. Palette quantisation by *relative* distance: pixel `p` belongs to palette colour `c` minimising
     `|p - c| / |c - b|` when that ratio is below 0.5. For a blurred edge pixel `p = a c + (1 - a) b`
     the ratio is `1 - a`, so the rule keeps exactly the pixels that are more than half covered by the
     object, whatever the local background (a fixed RGB radius would erode objects on backgrounds far
     from their colour and grow them on near ones). Colours slightly off (VQ decoder, generative model)
     only shift the ratio by `|offset| / |c - b|`, and `|c - b|` is >= ~80 on this dataset.
  3. 4-connected components per colour (numpy label propagation with pointer jumping); components
     smaller than a third of a small object are specks and ignored. A component too big for one
     object (two same-colour objects merged across the 1 px gutter by blur) is cut at the grid lines,
     since the dataset puts at most one object per cell.
  4. Per component: colour; position = 3x3 cell of the centroid; size = small/large by the larger side
     of the bounding box against the midpoint of `shapes.object_side` (6 / 9 px at 32 px, 12 / 18 at
     64); shape = triangle when the top quarter of the rows is much narrower than the bottom quarter
     (the triangle points up), else square when it fills its bounding box, else circle.

Scoring (`score_image`, `score_batch`), for ground-truth objects in distinct cells:
  - object accuracy (SOA-I-like): fraction of ground-truth objects for which a detection has the same
    colour, shape, size and cell (cells are distinct, so this matching is automatically one-to-one);
  - all_correct (GenEval-like): every ground-truth object matched and no extra detection;
  - count_correct: as many detections as ground-truth objects;
  - per-attribute accuracies: ground-truth objects and detections are paired one-to-one greedily by
    the number of agreeing attributes (ties: nearest centroid to the ground-truth cell centre); each
    attribute of a ground-truth object is right if its paired detection has it. A ground-truth object
    left without a detection (fewer detections than objects) is wrong on every attribute.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from tcts_jax.data import shapes

__all__ = ["Detection", "detect_objects", "score_detections", "score_image", "score_batch",
           "calibration_report"]

_PALETTE = shapes.PALETTE.astype(np.float32)  # (K, 3)

# Relative distance |p - c| / |c - b| below which a pixel is colour c: more than half covered.
REL_THRESHOLD = 0.5
# Background seeds are farther than this from every palette colour. Real backgrounds stay >= ~80 from
# the palette (nearest: dark purplish grey); the guard band around object cores removes blurred edges.
_BG_MIN_DIST = 70.0
# Object cores (used only to keep edges out of the background estimate): more than ~60% covered even
# on the nearest background.
_CORE_DIST = 30.0
# Shape rule thresholds, chosen on clean and degraded renders (see tests/test_alignment.py):
_TRIANGLE_TAPER = 0.6  # width(top quarter rows) / width(bottom quarter rows): triangle ~0.2-0.4, others ~0.7-1
_SQUARE_FILL = 0.93  # area / bbox area: square 1.0, circle <= 0.89 at 6 px, ~0.79 at 12-18 px
_MIN_AREA_FRACTION = 1.0 / 3.0  # of a small object's square box
_MERGED_FRACTION = 1.35  # a component side beyond this times a large object's side is several objects


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

  def as_row(self) -> np.ndarray:
    """[shape, color, size, position] like the rows of `make_example()['objects']`."""
    return np.array([self.shape, self.color, self.size, self.position], np.int32)

  def describe(self) -> str:
    return (f'{shapes.SIZES[self.size]} {shapes.COLOR_NAMES[self.color]} '
            f'{shapes.SHAPES[self.shape]} {shapes.POSITIONS[self.position]}')


# ----------------------------------------------------------------------------------------- helpers


def _as_rgb_float(image) -> np.ndarray:
  """uint8 (H, W, 3) -> float32 in [0, 255]; float images are taken to be in [0, 1]."""
  img = np.asarray(image)
  if img.ndim != 3 or img.shape[-1] != 3:
    raise ValueError(f'expected an (H, W, 3) RGB image, got shape {img.shape}')
  if np.issubdtype(img.dtype, np.floating):
    return np.clip(img.astype(np.float32) * 255., 0., 255.)
  return img.astype(np.float32)


def _box_sum(x: np.ndarray, r: int) -> np.ndarray:
  """Sum over the (2r+1)^2 window around each pixel (zero outside), via an integral image."""
  h, w = x.shape[:2]
  pad = np.zeros((h + 2 * r + 1, w + 2 * r + 1) + x.shape[2:], np.float64)
  pad[r + 1:r + 1 + h, r + 1:r + 1 + w] = x
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
    return np.full_like(img, 128.)
  r = max(2, size // 4)
  count = _box_sum(seeds.astype(np.float64), r)
  total = _box_sum(img * seeds[..., None], r)
  fallback = img[seeds].mean(0)
  return np.where(count[..., None] > 0, total / np.maximum(count, 1.)[..., None], fallback)


def _quantise(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(H, W) palette index per pixel (-1 for background) and (H, W, K) coverage estimates."""
  dist = np.linalg.norm(img[:, :, None, :] - _PALETTE, axis=-1)  # (H, W, K)
  bg = _local_background(img, dist)
  contrast = np.linalg.norm(_PALETTE - bg[:, :, None, :], axis=-1)  # |c - b|
  rel = dist / np.maximum(contrast, 1.)
  k = rel.argmin(-1)
  classes = np.where(np.take_along_axis(rel, k[..., None], -1)[..., 0] < REL_THRESHOLD, k, -1)
  # Coverage by colour c: projection of p - b on c - b. Linear, so pixel noise averages out (a
  # clipped 1 - rel would bias every background pixel upwards).
  diff = _PALETTE - bg[:, :, None, :]
  alpha = ((img - bg)[:, :, None, :] * diff).sum(-1) / np.maximum(contrast, 1.) ** 2
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


def _cell(y: float, x: float, size: int) -> int:
  """Row-major 3x3 cell index of a point, using the renderer's cell edges."""
  edges = np.round(np.arange(1, 3) * size / 3)
  return int(np.searchsorted(edges, y, side='right') * 3 + np.searchsorted(edges, x, side='right'))


def _shape_features(mask: np.ndarray, soft: np.ndarray) -> dict:
  """Shape features of one component: `mask` its pixels, `soft` the coverage estimate of its colour
  (1 on the component, 0 on other objects)."""
  ys, xs = np.nonzero(mask)
  top, left = ys.min(), xs.min()
  h, w = ys.max() - top + 1, xs.max() - left + 1
  box = mask[top:top + h, left:left + w]
  inner = soft[top:top + h, left:left + w]
  # Expanded by one pixel: keeps the half-covered apex row that blur may have cut off the mask.
  t0, l0 = max(top - 1, 0), max(left - 1, 0)
  outer = soft[t0:top + h + 1, l0:left + w + 1]
  yy = np.arange(t0, t0 + outer.shape[0]) + 0.5
  vcent = ((outer.sum(1) * yy).sum() / outer.sum() - (top + 0.5 * h)) / h
  q = max(1, h // 4)
  rows = inner.sum(1)
  corners = inner[[0, 0, -1, -1], [0, -1, 0, -1]].mean()
  mids = np.array([inner[0, (w - 1) // 2:w // 2 + 1].mean(), inner[-1, (w - 1) // 2:w // 2 + 1].mean(),
                   inner[(h - 1) // 2:h // 2 + 1, 0].mean(), inner[(h - 1) // 2:h // 2 + 1, -1].mean()])
  return {'fill': box.mean(), 'taper': rows[:q].mean() / max(rows[-q:].mean(), 1e-6),
          'corner': corners / max(mids.mean(), 1e-6), 'vcent': vcent, 'h': h, 'w': w}


def _classify_component(mask: np.ndarray, cover: np.ndarray, color: int, size: int) -> Detection:
  ys, xs = np.nonzero(mask)
  top, left = ys.min(), xs.min()
  h, w = ys.max() - top + 1, xs.max() - left + 1
  area = len(ys)
  cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
  # Size: the larger bbox side (the triangle's apex row may vanish under blur; its base does not).
  mid_side = 0.5 * (shapes.object_side('small', size) + shapes.object_side('large', size))
  size_idx = shapes.SIZES.index('large' if max(h, w) > mid_side else 'small')
  f = _shape_features(mask, cover)
  if f['taper'] < _TRIANGLE_TAPER:
    shape = 'triangle'
  elif f['fill'] >= _SQUARE_FILL:
    shape = 'square'
  else:
    shape = 'circle'
  return Detection(shape=shapes.SHAPES.index(shape), color=int(color), size=size_idx,
                   position=_cell(cy, cx, size), area=int(area), centroid=(float(cy), float(cx)),
                   bbox=(int(top), int(left), int(h), int(w)), image_size=int(size))


# --------------------------------------------------------------------------------------------- API


def detect_objects(image) -> list[Detection]:
  """Detects the palette-coloured objects of an RGB image (uint8 (H, W, 3); square, any size).

  Returns `Detection`s sorted by cell then colour; specks below a third of a small object's box are
  ignored. See the module docstring for the rules.
  """
  img = _as_rgb_float(image)
  size = img.shape[0]
  classes, cover = _quantise(img)
  labels = _label(classes)
  min_area = _MIN_AREA_FRACTION * shapes.object_side('small', size) ** 2
  max_side = _MERGED_FRACTION * shapes.object_side('large', size)
  grid = np.round(np.arange(1, 3) * size / 3).astype(int)
  rows = np.searchsorted(grid, np.arange(size), side='right')
  cell_of_pixel = rows[:, None] * 3 + rows[None, :]

  out = []
  flat_labels = labels.ravel()
  ids, counts = np.unique(flat_labels[flat_labels >= 0], return_counts=True)
  for comp, count in zip(ids, counts):
    if count < min_area:
      continue
    mask = labels == comp
    color = classes.ravel()[comp]
    ys, xs = np.nonzero(mask)
    if max(np.ptp(ys), np.ptp(xs)) + 1 > max_side:
      # Several objects fused by blur: the dataset has at most one per cell, so cut at the grid lines.
      parts = [mask & (cell_of_pixel == c) for c in np.unique(cell_of_pixel[mask])]
    else:
      parts = [mask]
    for part in parts:
      if part.sum() >= min_area:
        out.append(_classify_component(part, np.where(part, 1., np.where(classes < 0, cover[..., color], 0.)), color, size))
  out.sort(key=lambda d: (d.position, d.color, -d.area))
  return out


_ATTRS = ('shape', 'color', 'size', 'position')


def score_detections(detections: list[Detection], objects, num_objects) -> dict:
  """Scores detections against the ground truth rows [shape, color, size, position] (first
  `num_objects` rows of `objects`). Returns floats: object_accuracy, all_correct, count_correct,
  num_detected, num_objects, and {shape,color,size,position}_accuracy (see the module docstring)."""
  n = int(num_objects)
  gt = np.asarray(objects, np.int64).reshape(-1, 4)[:n]
  det = (np.stack([d.as_row() for d in detections]) if detections
         else np.zeros((0, 4), np.int64))
  agree = gt[:, None, :] == det[None, :, :]  # (G, D, 4)
  exact = agree.all(-1)
  matched = exact.any(1)

  # Greedy one-to-one pairing by number of agreeing attributes, then by centroid distance to the
  # ground-truth cell centre (a fraction of the image side, so always < 1 attribute).
  attr_right = np.zeros((n, 4), bool)
  if n and len(detections):
    centres = np.array([[(r + 0.5) / 3., (c + 0.5) / 3.] for r, c in
                        (divmod(int(p), 3) for p in gt[:, 3])])
    cents = np.array([d.centroid for d in detections]) / detections[0].image_size
    dist = np.linalg.norm(centres[:, None] - cents[None], axis=-1)
    score = agree.sum(-1) - 0.5 * np.minimum(dist, 1.)
    free_g, free_d = set(range(n)), set(range(len(detections)))
    for flat in np.argsort(-score, axis=None, kind='stable'):
      g, d = divmod(int(flat), len(detections))
      if g in free_g and d in free_d:
        attr_right[g] = agree[g, d]
        free_g.discard(g)
        free_d.discard(d)
      if not free_g or not free_d:
        break
  result = {
      'object_accuracy': float(matched.mean()) if n else 1.0,
      'all_correct': float(matched.all() and len(detections) == n),
      'count_correct': float(len(detections) == n),
      'num_detected': float(len(detections)),
      'num_objects': float(n),
  }
  for i, name in enumerate(_ATTRS):
    result[f'{name}_accuracy'] = float(attr_right[:, i].mean()) if n else 1.0
  return result


def score_image(image, objects, num_objects) -> dict:
  """Detects the objects of `image` and scores them against the ground truth (`score_detections`)."""
  return score_detections(detect_objects(image), objects, num_objects)


_OBJECT_LEVEL = ('object_accuracy',) + tuple(f'{a}_accuracy' for a in _ATTRS)


def score_batch(images, objects, num_objects, detections=None) -> dict:
  """Scores a batch: images (N, H, W, 3), objects (N, MAX_OBJECTS, 4), num_objects (N,).

  Returns the means and, under 'per_image', the per-image values as arrays. Object-level
  accuracies (object/attribute) are pooled over all ground-truth objects (each object counts once,
  as in SOA-I); all_correct and count_correct are image-level means (as in GenEval).
  `detections` (a list of per-image `detect_objects` results) skips detection, e.g. to rescore the
  same images against other captions.
  """
  objects = np.asarray(objects)
  num_objects = np.asarray(num_objects).reshape(-1)
  if detections is None:
    detections = [detect_objects(im) for im in images]
  rows = [score_detections(d, o, n) for d, o, n in zip(detections, objects, num_objects)]
  per_image = {k: np.array([r[k] for r in rows]) for k in rows[0]}
  weights = per_image['num_objects']
  out = {}
  for k, v in per_image.items():
    if k in _OBJECT_LEVEL:
      out[k] = float((v * weights).sum() / max(weights.sum(), 1.))
    elif k != 'num_objects':
      out[k] = float(v.mean())
  out['per_image'] = per_image
  return out
