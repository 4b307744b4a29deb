"""The exact checker of shape scenes (`scenes.py`): objects, fills, positions, relations and the background.

Detection is captioned shapes' (`shapes_alignment.detect_objects`: local background, palette quantisation
by relative distance, connected components, least-squares template fit), with templates of every
(shape, size, fill): a hollow object is its renderer's outline. The background texture is read from the
luminance of pixels away from every object: a square wave of half-period h makes pixels h apart differ by
twice its amplitude and pixels 2h apart not at all, so along each axis

  contrast = mean |L(p) - L(p + h)| - mean |L(p) - L(p + 2h)|

is about 2 x amplitude (24) across stripes and about 0 along them or on a plain background (gradients and
pixel noise add about equally to both terms). Textured along both axes is 'checkered', along one 'striped'.

Scoring a caption (`score_detections`). In a scene every (shape, colour) pair occurs once, so the
candidates of a described object are the detections of its shape and colour:
  - object_accuracy: a candidate has the object's size and fill and sits where the caption says: in its
    cell ('absolute'), anywhere ('free'), or in the stated relation ('left of': same row, a column to the
    left; 'above': same column, a row up) to some candidate of the referenced object ('relational');
    pooled over all objects (SOA-I-like);
  - binding_accuracy: some candidate exists (the colour is on the right shape); size_ and fill_accuracy:
    the candidate that agrees best has it; position_accuracy over absolute objects, relation_accuracy over
    relational ones;
  - all_correct: every object right and no other detection (GenEval-like); count_correct: as many
    detections as objects; duplicates: candidates beyond the first, summed over objects (an object drawn
    twice, the typical parallel-decoding error); texture_accuracy: the background's texture.
Object-level accuracies pool counts over objects (`pool`); image-level ones average over images.
"""

from __future__ import annotations

import functools

import numpy as np

from tcts_jax.data import scenes, shapes
from tcts_jax.data import shapes_alignment as sa

# Per-image counts `score_detections` returns; `pool` turns them into the reported rates.
RATES = {  # reported name: (numerator, denominator); denominator None: mean over images
  'object_accuracy': ('correct', 'objects'),
  'binding_accuracy': ('bound', 'objects'),
  'size_accuracy': ('size_right', 'objects'),
  'fill_accuracy': ('fill_right', 'objects'),
  'position_accuracy': ('position_right', 'absolute'),
  'relation_accuracy': ('relation_right', 'relational'),
  'all_correct': ('all_correct', None),
  'count_correct': ('count_correct', None),
  'texture_accuracy': ('texture_right', None),
  'num_detected': ('num_detected', None),
  'duplicates': ('duplicates', None),
}
TEXTURE_CONTRAST = 0.125  # of 2 x amplitude (3 at 12): blur and generators soften stripes; plain stays near 0
_BACKGROUND_GUARD = 2  # px at 48 px: texture is read this far from any object pixel


@functools.lru_cache(maxsize=4)
def templates(size: int) -> tuple[int, np.ndarray, np.ndarray]:
  """Coverage templates of every (shape, size, fill) at offsets of +-1 px and several blur levels:
  (canvas side, (M, 3) [shape, size, fill] keys, (M, T, T) templates), as `shapes_alignment._templates`."""
  t = shapes.object_side('large', size) + 5
  keys, temps = [], []
  for si, shape in enumerate(shapes.SHAPES):
    for zi, z in enumerate(shapes.SIZES):
      side = shapes.object_side(z, size)
      for fi, fill in enumerate(scenes.FILLS):
        mask = scenes.object_mask(shape, fill, side, size).astype(np.float64)
        o = (t - side) // 2
        for sigma in sa._TEMPLATE_BLURS:  # pylint: disable=protected-access
          for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
              canvas = np.zeros((t, t))
              canvas[o + dy : o + dy + side, o + dx : o + dx + side] = mask
              keys.append((si, zi, fi))
              temps.append(sa._blur(canvas, sigma * size / 32))  # pylint: disable=protected-access
  return t, np.array(keys), np.stack(temps)


def texture_contrast(img: np.ndarray, classes: np.ndarray) -> tuple[float, float]:
  """(along y, along x) texture contrast of the background (module docstring) of a float RGB image."""
  size = img.shape[0]
  lum = img.mean(-1)
  guard = max(1, round(_BACKGROUND_GUARD * size / 48))
  background = ~sa._dilate(classes >= 0, guard)  # pylint: disable=protected-access
  half = max(1, round(scenes.TEXTURE_PERIOD * size / 2))

  def mean_abs_diff(axis: int, lag: int) -> float:
    a = np.moveaxis(lum, axis, 0)
    m = np.moveaxis(background, axis, 0)
    both = m[:-lag] & m[lag:]
    return float(np.abs(a[:-lag] - a[lag:])[both].mean()) if both.any() else 0.0

  return tuple(mean_abs_diff(axis, half) - mean_abs_diff(axis, 2 * half) for axis in (0, 1))


def classify_texture(contrast: tuple[float, float]) -> int:
  """Index into scenes.TEXTURES from the (y, x) contrasts."""
  textured = sum(c > TEXTURE_CONTRAST * 2 * scenes.TEXTURE_AMPLITUDE for c in contrast)
  return textured  # 0 plain, 1 striped, 2 checkered (the order of scenes.TEXTURES)


def analyse(image) -> tuple[list[sa.Detection], int]:
  """The detections and the background texture (index into scenes.TEXTURES) of an image."""
  img = sa._as_rgb_float(image)  # pylint: disable=protected-access
  detections, classes = sa._detect(img, templates(img.shape[0]))  # pylint: disable=protected-access
  return detections, classify_texture(texture_contrast(img, classes))


def score_detections(detections, objects, num_objects, texture: int, detected_texture: int) -> dict:
  """Per-image counts (RATES' numerators and denominators) and 'matched' (num_objects,) bool per object."""
  n = int(num_objects)
  gt = np.asarray(objects, np.int64).reshape(-1, len(scenes.COLUMNS))[:n]
  col = {name: i for i, name in enumerate(scenes.COLUMNS)}
  candidates = [[d for d in detections if (d.shape, d.color) == (g[col['shape']], g[col['color']])] for g in gt]

  def position_ok(i: int, d) -> bool:
    g = gt[i]
    mode = scenes.POSITION_MODES[g[col['mode']]]
    if mode == 'absolute':
      return d.position == g[col['cell']]
    if mode == 'free':
      return True
    rel = scenes.RELATIONS[g[col['relation']]]
    return any(scenes.holds(rel, d.position, r.position) for r in candidates[g[col['reference']]])

  matched = np.zeros(n, bool)
  counts = dict.fromkeys(('bound', 'size_right', 'fill_right', 'position_right', 'relation_right'), 0)
  for i, g in enumerate(gt):
    checks = [
      (d.size == g[col['size']], d.fill == g[col['fill']], position_ok(i, d)) for d in candidates[i]
    ]  # fmt: skip
    matched[i] = any(all(c) for c in checks)
    if not checks:
      continue
    size_ok, fill_ok, pos_ok = max(checks, key=sum)
    mode = scenes.POSITION_MODES[g[col['mode']]]
    counts['bound'] += 1
    counts['size_right'] += size_ok
    counts['fill_right'] += fill_ok
    counts['position_right'] += pos_ok and mode == 'absolute'
    counts['relation_right'] += any(c[2] for c in checks) and mode == 'relational'
  modes = gt[:, col['mode']]
  return {
    'objects': float(n),
    'correct': float(matched.sum()),
    **{k: float(v) for k, v in counts.items()},
    'absolute': float(np.sum(modes == scenes.POSITION_MODES.index('absolute'))),
    'relational': float(np.sum(modes == scenes.POSITION_MODES.index('relational'))),
    'all_correct': float(bool(matched.all()) and len(detections) == n),
    'count_correct': float(len(detections) == n),
    'num_detected': float(len(detections)),
    'duplicates': float(sum(max(0, len(c) - 1) for c in candidates)),
    'texture_right': float(int(detected_texture) == int(texture)),
    'matched': matched,
  }


def score_image(image, objects, num_objects, texture) -> dict:
  detections, detected_texture = analyse(image)
  return score_detections(detections, objects, num_objects, texture, detected_texture)


def score_batch(images, objects, num_objects, texture, analysed=None) -> dict:
  """Scores a batch; returns the pooled rates and under 'per_image' (N,) arrays of the counts (RATES) and
  under 'matched' a list of per-object bool arrays. `analysed` (per-image `analyse` results) skips detection."""
  num_objects = np.asarray(num_objects).reshape(-1)
  texture = np.asarray(texture).reshape(-1)
  analysed = [analyse(im) for im in images] if analysed is None else analysed
  if not len(analysed) == len(objects) == len(num_objects) == len(texture):
    raise ValueError(
      f'batch sizes differ: {len(analysed)} images, {len(objects)} objects, {len(num_objects)} num_objects, '
      f'{len(texture)} textures'
    )
  rows = [score_detections(d, o, n, t, dt) for (d, dt), o, n, t in zip(analysed, objects, num_objects, texture)]
  per_image = {k: np.array([r[k] for r in rows]) for k in rows[0] if k != 'matched'}
  return {**pool(per_image), 'per_image': per_image, 'matched': [r['matched'] for r in rows]}


def pool(values: dict, idx=None) -> dict:
  """The reported rates over images `idx` ((R, n) resamples or (n,), all when None)."""
  idx = np.arange(len(values['objects'])) if idx is None else idx
  out = {}
  for name, (num, den) in RATES.items():
    if den is None:
      out[name] = values[num][idx].mean(-1)
    else:
      out[name] = values[num][idx].sum(-1) / np.maximum(values[den][idx].sum(-1), 1.0)
  return out


def detections_of(objects, num_objects, image_size: int) -> list[sa.Detection]:
  """Perfect detections of a ground-truth scene (no pixels): for the chance level by simulation."""
  out = []
  for shape, color, size, fill, cell, *_ in np.asarray(objects)[: int(num_objects)].tolist():
    r, c = divmod(cell, 3)
    centre = ((r + 0.5) * image_size / 3, (c + 0.5) * image_size / 3)
    out.append(sa.Detection(shape, color, size, cell, 1, centre, (0, 0, 1, 1), image_size, fill))
  return out


def calibration_report(
  num: int = 500, seed: int = 0, image_size: int = 48, blur_sigma: float = 0.5, noise: int = 10
) -> dict:
  """Checker calibration on `num` renders (`scenes.make_example(seed, i, image_size)`): rates for
  'real': the renders against their own captions (should be ~100 %);
  'blurred': blurred by `blur_sigma` px (at 32 px, scaled) plus uniform RGB noise in [-noise, noise];
  'shuffled': the renders' detections against the next example's caption (should be ~chance);
  'chance': perfect detections of each scene against the next caption (the chance level, no pixels)."""
  examples = [scenes.make_example(seed, i, image_size) for i in range(num)]
  images = np.stack([e['image'] for e in examples])
  objects = np.stack([e['objects'] for e in examples])
  counts = np.array([e['num_objects'] for e in examples])
  textures = np.array([e['texture'] for e in examples])
  rng = np.random.default_rng([seed, num, image_size])
  sigma = blur_sigma * image_size / 32
  degraded = [
    np.clip(sa.blur_image(im, sigma).astype(np.int64) + rng.integers(-noise, noise + 1, im.shape), 0, 255).astype(
      np.uint8
    )
    for im in images
  ]
  analysed = [analyse(im) for im in images]
  perfect = [(detections_of(o, n, image_size), t) for o, n, t in zip(objects, counts, textures)]

  def rates(result):
    return {k: float(v) for k, v in result.items() if k in RATES}

  def shifted(a):
    return np.roll(a, 1, 0)

  return {
    'real': rates(score_batch(images, objects, counts, textures, analysed)),
    'blurred': rates(score_batch(degraded, objects, counts, textures)),
    'shuffled': rates(score_batch(images, shifted(objects), shifted(counts), shifted(textures), analysed)),
    'chance': rates(score_batch(images, shifted(objects), shifted(counts), shifted(textures), perfect)),
  }
