"""Calibration of the compositional alignment checker (tcts_jax.metrics.alignment).

A checker is only meaningful if it is near 100 % on real renders, near chance on mismatched captions,
and stable under the softness of generated images; these tests pin all three on the dataset itself.
"""

import dataclasses
import itertools

import numpy as np
import pytest

from tcts_jax.data import shapes
from tcts_jax.data import shapes_alignment as alignment

NUM = 500


def _batch(size, num=NUM, seed=0):
  examples = [shapes.make_example(seed, i, size) for i in range(num)]
  return (
    np.stack([e['image'] for e in examples]),
    np.stack([e['objects'] for e in examples]),
    np.array([e['num_objects'] for e in examples]),
  )


def _noisy(image, rng, amplitude=10):
  noise = rng.integers(-amplitude, amplitude + 1, image.shape)
  return np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)


def _box_blur3(image):
  """3x3 box blur with reflecting borders (an independent softening, harsher than sigma 0.5)."""
  x = np.pad(image.astype(np.float64), ((1, 1), (1, 1), (0, 0)), mode='reflect')
  s = image.shape[0]
  out = sum(x[i : i + s, j : j + s] for i in range(3) for j in range(3)) / 9.0
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


@pytest.fixture(scope='module', params=[32, 64])
def real(request):
  size = request.param
  images, objects, counts = _batch(size)
  detections = [alignment.detect_objects(im) for im in images]
  return size, images, objects, counts, detections


def test_real_renders_score_near_perfect(real):
  _, images, objects, counts, detections = real
  r = alignment.score_batch(images, objects, counts, detections=detections)
  assert r['object_accuracy'] >= 0.98
  assert r['all_correct'] >= 0.98
  for name in ('shape', 'color', 'size', 'position'):
    assert r[f'{name}_accuracy'] >= 0.98
  assert r['per_image']['all_correct'].shape == (NUM,)


def test_shuffled_captions_fall_to_chance(real):
  # Chance level (alignment.chance_level, analytic): a caption object of an independent scene is
  # matched iff that scene has an object in its cell (E[n]/9 = 2/9, n uniform in 1..3) with the same
  # shape, colour and size (1/36): 1/162 = 0.62 %. all_correct additionally needs identical scenes:
  # sum_n (1/9) / C(9, n) / 36^n = 0.034 %. Shuffled = each image paired with the previous example's
  # ground truth (independent scenes); the detections are the same as in the real test.
  _, images, objects, counts, detections = real
  chance = alignment.chance_level()
  assert chance['object_accuracy'] == pytest.approx(1 / 162)
  assert chance['all_correct'] == pytest.approx(1 / 2916, rel=0.01)
  r = alignment.score_batch(images, np.roll(objects, 1, 0), np.roll(counts, 1), detections=detections)
  # ~1000 caption objects: a binomial at 0.62 % stays far below 3 % (and far below the 20 % bound).
  assert r['object_accuracy'] < 0.03
  assert r['all_correct'] < 0.01
  assert r['count_correct'] < 0.45  # chance 1/3


@pytest.mark.parametrize('size', [32, 64])
def test_robust_to_blur_and_colour_noise(size):
  images, objects, counts = _batch(size, num=300, seed=1)
  rng = np.random.default_rng(size)
  sigma = 0.5 * size / 32  # the same softness relative to the objects at every resolution
  soft = [_noisy(alignment.blur_image(im, sigma), rng) for im in images]
  r = alignment.score_batch(soft, objects, counts)
  assert r['object_accuracy'] >= 0.95
  assert r['all_correct'] >= 0.95
  boxed = [_noisy(_box_blur3(im), rng) for im in images]  # harsher: 6 px objects at 32 px
  r = alignment.score_batch(boxed, objects, counts)
  assert r['object_accuracy'] >= 0.95
  assert r['all_correct'] >= 0.95


@pytest.mark.parametrize('size', [32, 64])
def test_blank_backgrounds_have_no_objects(size):
  rng = np.random.default_rng(size)
  for i in range(100):
    scene = dataclasses.replace(shapes.sample_scene(np.random.default_rng([7, i])), objects=(), jitter=())
    image = shapes.render(scene, size)
    assert alignment.detect_objects(image) == []
    assert alignment.detect_objects(_noisy(alignment.blur_image(image, 0.5), rng)) == []
  r = alignment.score_image(
    shapes.render(scene, size), shapes.encode_objects((shapes.ShapeObject('circle', 'red', 'large', 'middle'),)), 1
  )
  assert r['num_detected'] == 0 and r['object_accuracy'] == 0 and r['all_correct'] == 0
  assert r['color_accuracy'] == 0  # a missing object is wrong on every attribute
  grey = np.full((size, size, 3), 128, np.uint8)
  assert alignment.detect_objects(grey) == []


def test_every_single_object_is_recognised():
  """Exhaustive: each shape x colour x size x cell alone on a background, at 32 px."""
  base = shapes.sample_scene(np.random.default_rng(3))
  for shape, color, size, pos in itertools.product(shapes.SHAPES, shapes.COLOR_NAMES, shapes.SIZES, shapes.POSITIONS):
    obj = shapes.ShapeObject(shape, color, size, pos)
    image = shapes.render(dataclasses.replace(base, objects=(obj,), jitter=((1, -1),)), 32)
    found = alignment.detect_objects(image)
    assert [d.describe() for d in found] == [f'{size} {color} {shape} {pos}']


def test_wrong_colour_repaint_fails_only_that_object():
  for i in range(200):
    e = shapes.make_example(5, i, 32)
    if e['num_objects'] >= 2:
      break
  rng = np.random.default_rng([5, i])
  scene = shapes.sample_scene(rng)  # the same scene make_example rendered
  assert shapes.encode_objects(scene.objects).tolist() == e['objects'].tolist()
  target = scene.objects[0]
  new_color = next(
    c for c in shapes.COLOR_NAMES if all(c != o.color for o in scene.objects)
  )  # no accidental match elsewhere
  top, left, side = shapes.object_box(target, scene.jitter[0], 32)
  image = e['image'].copy()
  window = image[top : top + side, left : left + side]
  window[(window == shapes.COLORS[target.color]).all(-1)] = shapes.COLORS[new_color]

  r = alignment.score_image(image, e['objects'], e['num_objects'])
  per = r['per_object']
  assert per['matched'].tolist() == [False] + [True] * (e['num_objects'] - 1)
  assert per['color'].tolist() == [False] + [True] * (e['num_objects'] - 1)
  for name in ('shape', 'size', 'position'):
    assert per[name].all()
  assert r['all_correct'] == 0 and r['count_correct'] == 1
  assert r['object_accuracy'] == pytest.approx(1 - 1 / e['num_objects'])


def test_extra_object_breaks_all_correct_only():
  scene = shapes.sample_scene(np.random.default_rng(11))
  used = {o.position for o in scene.objects}
  free = next(p for p in shapes.POSITIONS if p not in used)
  extra = dataclasses.replace(
    scene,
    objects=scene.objects + (shapes.ShapeObject('square', 'green', 'small', free),),
    jitter=scene.jitter + ((0, 0),),
  )
  r = alignment.score_image(shapes.render(extra, 32), shapes.encode_objects(scene.objects), len(scene.objects))
  assert r['object_accuracy'] == 1 and r['all_correct'] == 0 and r['count_correct'] == 0
  assert r['num_detected'] == len(scene.objects) + 1


def test_same_colour_neighbours_fused_by_blur_are_split():
  # Left cell [0, 10), middle cell [11, 20) at 32 px: with jitter +1 the two large squares are 1 px
  # apart, and a 3x3 box blur fills the gap with 2/3 coverage.
  base = shapes.sample_scene(np.random.default_rng(0))
  objs = (shapes.ShapeObject('square', 'red', 'large', 'top left'), shapes.ShapeObject('square', 'red', 'large', 'top'))
  scene = dataclasses.replace(base, objects=objs, jitter=((0, 1), (0, 0)))
  image = _box_blur3(shapes.render(scene, 32))
  found = alignment.detect_objects(image)
  assert [d.describe() for d in found] == ['large red square top left', 'large red square top']


def test_label_matches_flood_fill():
  rng = np.random.default_rng(0)
  for _ in range(50):
    classes = rng.integers(-1, 3, size=(rng.integers(1, 20), rng.integers(1, 20)))
    labels = alignment._label(classes)  # pylint: disable=protected-access
    # Reference: flood fill from every unvisited pixel.
    ref = -np.ones_like(classes)
    h, w = classes.shape
    n = 0
    for y, x in zip(*np.nonzero(classes >= 0)):
      if ref[y, x] >= 0:
        continue
      stack = [(y, x)]
      ref[y, x] = n
      while stack:
        cy, cx = stack.pop()
        for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
          if 0 <= ny < h and 0 <= nx < w and ref[ny, nx] < 0 and classes[ny, nx] == classes[cy, cx]:
            ref[ny, nx] = n
            stack.append((ny, nx))
      n += 1
    assert (labels < 0).tolist() == (ref < 0).tolist()
    pairs = set(zip(labels[ref >= 0].tolist(), ref[ref >= 0].tolist()))
    assert len(pairs) == n == len(np.unique(labels[labels >= 0]))


def test_float_images_and_batch_api():
  images, objects, counts = _batch(32, num=8)
  as_float = images.astype(np.float32) / 255.0
  a = alignment.score_batch(images, objects, counts)
  b = alignment.score_batch(as_float, objects, counts)
  assert a['object_accuracy'] == b['object_accuracy'] == 1.0
  assert set(a['per_image']) >= {'object_accuracy', 'all_correct', 'num_detected', 'color_accuracy'}
  with pytest.raises(ValueError):
    alignment.detect_objects(np.zeros((32, 16, 3), np.uint8))


def test_calibration_report_small():
  r = alignment.calibration_report(num=60, seed=2, image_size=32)
  assert set(r) == {'real', 'shuffled', 'blurred', 'chance'}
  assert r['real']['all_correct'] >= 0.98
  assert r['blurred']['object_accuracy'] >= 0.95
  assert r['shuffled']['object_accuracy'] < 0.2
