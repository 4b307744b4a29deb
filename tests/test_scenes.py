"""Shape scenes (tcts_jax/data/scenes.py) and their exact checker (scenes_alignment.py).

The scenes must say what they show (every caption clause true of the render), and the checker must be
near 100 % on renders, stay there under blur and noise, and fall to chance on other scenes' captions.
"""

import dataclasses

import numpy as np
import pytest

from tcts_jax.data import scenes, shape_scenes, shapes
from tcts_jax.data import scenes_alignment as alignment
from tcts_jax.data import shapes_alignment

NUM = 200
COL = {name: i for i, name in enumerate(scenes.COLUMNS)}


def _examples(num=NUM, seed=0, size=48):
  return [scenes.make_example(seed, i, size) for i in range(num)]


@pytest.fixture(scope='module')
def examples():
  return _examples()


def test_make_example_is_deterministic():
  a, b = scenes.make_example(3, 7), scenes.make_example(3, 7)
  assert a['caption'] == b['caption'] and np.array_equal(a['image'], b['image'])
  assert not np.array_equal(a['image'], scenes.make_example(3, 8)['image'])


def test_scenes_hold_what_their_captions_say(examples):
  vocabulary = set(scenes.vocabulary())
  modes = set()
  for e in examples:
    n = e['num_objects']
    rows = e['objects'][:n]
    assert scenes.MIN_OBJECTS <= n <= scenes.MAX_OBJECTS
    assert np.all(e['objects'][n:] == -1)
    # Each (shape, colour) once, each cell once: references by "the <colour> <shape>" are unambiguous.
    assert len({(r[COL['shape']], r[COL['color']]) for r in rows}) == n
    assert len(set(rows[:, COL['cell']])) == n
    assert set(e['caption'].split()) <= vocabulary
    assert e['caption'].split()[-1] == 'background'
    assert e['caption'].split()[-2] in scenes.TEXTURE_WORDS[scenes.TEXTURES[e['texture']]]
    for obj in scenes.decode_objects(e['objects'], n):
      modes.add(obj.mode)
      assert f'{obj.color} ' in e['caption']
      if obj.mode == 'relational':
        ref = scenes.decode_objects(e['objects'], n)[obj.reference]
        assert ref.mode != 'relational'  # no chains
        assert scenes.holds(obj.relation, shapes.POSITIONS.index(obj.position), shapes.POSITIONS.index(ref.position))
        assert f'the {ref.color} ' in e['caption']
  assert modes == set(scenes.POSITION_MODES)


def test_relations_follow_rows_and_columns():
  # cells are row-major on the 3x3 grid: 0 1 2 / 3 4 5 / 6 7 8
  assert scenes.holds('left of', 3, 5) and not scenes.holds('left of', 5, 3)
  assert scenes.holds('above', 1, 7) and scenes.holds('below', 7, 4)
  assert not scenes.holds('left of', 0, 4)  # another row
  assert scenes.relation(4, 4) == ''


def test_hollow_objects_are_outlines_and_textures_are_square_waves():
  mask = scenes.object_mask('square', 'hollow', 13, 48)
  assert mask[0].all() and mask[:, 0].all() and not mask[2:-2, 2:-2].any()  # a 2 px outline at 48 px
  assert scenes.object_mask('circle', 'solid', 13, 48).sum() > scenes.object_mask('circle', 'hollow', 13, 48).sum()
  e = scenes.make_example(0, 0)
  scene = scenes.sample_scene(np.random.default_rng([0, 0]))
  for texture in scenes.TEXTURES:
    lum = scenes.texture_luminance(dataclasses.replace(scene, texture=texture), 48)
    assert set(np.unique(lum)) <= {-scenes.TEXTURE_AMPLITUDE, 0.0, scenes.TEXTURE_AMPLITUDE}
    assert (np.ptp(lum) == 0) == (texture == 'plain')
  assert e['image'].shape == (48, 48, 3)


@pytest.fixture(scope='module')
def calibration():
  return alignment.calibration_report(num=NUM)


def test_checker_is_near_perfect_on_renders_and_under_blur_and_noise(calibration):
  for row in ('real', 'blurred'):
    r = calibration[row]
    assert r['object_accuracy'] >= 0.98 and r['all_correct'] >= 0.95, (row, r)
    for key in ('binding_accuracy', 'fill_accuracy', 'position_accuracy', 'relation_accuracy', 'texture_accuracy'):
      assert r[key] >= 0.98, (row, key, r[key])
    assert r['duplicates'] == 0


def test_shuffled_captions_score_at_chance(calibration):
  # 'chance' scores PERFECT detections of each scene against the next scene's caption (no pixels), so the
  # shuffled row (real detections) must equal it up to detection errors; both far below real.
  shuffled, chance = calibration['shuffled'], calibration['chance']
  for key in ('object_accuracy', 'all_correct', 'texture_accuracy', 'binding_accuracy'):
    assert shuffled[key] == pytest.approx(chance[key], abs=0.02), key
  assert chance['object_accuracy'] < 0.06 and chance['all_correct'] < 0.01
  assert chance['texture_accuracy'] == pytest.approx(1 / 3, abs=0.1)


def _scene_rows(*objects):
  """Ground-truth rows from (shape, colour, size, fill, cell, mode, relation, reference) tuples."""
  rows = np.full((scenes.MAX_OBJECTS, len(scenes.COLUMNS)), -1, np.int32)
  rows[: len(objects)] = objects
  return rows, len(objects)


def _det(shape, color, size, fill, cell):
  return alignment.detections_of(np.array([[shape, color, size, fill, cell, 0, -1, -1]]), 1, 48)[0]


def test_scoring_rules():
  absolute, relational, free = (scenes.POSITION_MODES.index(m) for m in scenes.POSITION_MODES)
  left = scenes.RELATIONS.index('left of')
  # A red circle in the middle (cell 4), a blue square left of it, a free green triangle.
  rows, n = _scene_rows(
    (0, 0, 1, 0, 4, absolute, -1, -1), (1, 2, 0, 1, 3, relational, left, 0), (2, 1, 0, 0, 8, free, -1, -1)
  )
  right = [_det(0, 0, 1, 0, 4), _det(1, 2, 0, 1, 3), _det(2, 1, 0, 0, 0)]  # the free triangle elsewhere: fine
  r = alignment.score_detections(right, rows, n, 0, 0)
  assert r['correct'] == 3 and r['all_correct'] == 1 and r['relation_right'] == 1 and r['texture_right'] == 1
  # The square in the same row but RIGHT of the circle: the relation fails, nothing else.
  r = alignment.score_detections([right[0], _det(1, 2, 0, 1, 5), right[2]], rows, n, 0, 1)
  assert r['correct'] == 2 and r['relation_right'] == 0 and r['bound'] == 3 and r['texture_right'] == 0
  # The circle drawn twice (once right): a duplicate, not all correct, but every object is there.
  r = alignment.score_detections(right + [_det(0, 0, 1, 0, 6)], rows, n, 0, 0)
  assert r['correct'] == 3 and r['duplicates'] == 1 and r['all_correct'] == 0 and r['count_correct'] == 0
  # Colours swapped between two objects (a binding error): both unbound.
  r = alignment.score_detections([_det(0, 2, 1, 0, 4), _det(1, 0, 0, 1, 3), right[2]], rows, n, 0, 0)
  assert r['bound'] == 1 and r['correct'] == 1
  # Wrong fill: bound, fill wrong.
  r = alignment.score_detections([right[0], _det(1, 2, 0, 0, 3), right[2]], rows, n, 0, 0)
  assert r['bound'] == 3 and r['fill_right'] == 2 and r['correct'] == 2
  pooled = alignment.pool({k: np.array([v]) for k, v in r.items() if k != 'matched'})
  assert pooled['object_accuracy'] == pytest.approx(2 / 3) and pooled['relation_accuracy'] == 1.0


def test_detected_fills_and_textures_on_renders(examples):
  for e in examples[:40]:
    detections, texture = alignment.analyse(e['image'])
    assert texture == e['texture']
    truth = {(r[COL['shape']], r[COL['color']]): r[COL['fill']] for r in e['objects'][: e['num_objects']]}
    assert {(d.shape, d.color): d.fill for d in detections} == truth


def test_feature_targets_encode_each_cell():
  e = scenes.make_example(0, 1)
  cells = np.asarray(shape_scenes.cell_targets(e['objects'][None], np.array([e['num_objects']])))[0]
  assert cells.shape == (9,) and np.sum(cells > 0) == e['num_objects']
  assert cells.max() < shape_scenes.NUM_CELL_CLASSES
  for r in e['objects'][: e['num_objects']]:
    kind = r[COL['shape']] * len(shapes.COLOR_NAMES) + r[COL['color']]
    assert cells[r[COL['cell']]] == 1 + (kind * 2 + r[COL['size']]) * 2 + r[COL['fill']]


def test_shapes_checker_is_unchanged_by_the_fill_templates():
  # captioned shapes' detections carry fill 0 and the same attributes as before the templates argument.
  e = shapes.make_example(0, 0)
  assert all(d.fill == 0 for d in shapes_alignment.detect_objects(e['image']))


def test_features_stage_trains_on_scenes(tmp_path):
  """The FID-shapes network of shape scenes (cell classes with fills + the texture head) trains with the real
  trainer on the tiny split."""
  from tcts_jax.training.trainer import train_and_evaluate
  from tcts_jax.utils.config import load_config

  config = load_config('configs/scenes.py:features,tiny')
  with config.unlocked():
    config.data.data_dir = str(tmp_path / 'tfds')
    config.train.image_every = 0
  _, history = train_and_evaluate(config, tmp_path / 'features')
  first, last = history[0][1], history[-1][1]
  assert last['loss'] < first['loss']
  assert {'cell_accuracy', 'texture_accuracy', 'image_accuracy', 'pooled_mse'} <= set(last)
