"""Tests of the captioned shapes dataset, its TFDS builder and the input pipeline."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

from tcts_jax.data import shapes


def _palette_distance(image):
  """Distance of every pixel to its nearest palette colour, (H, W)."""
  diff = image[:, :, None, :].astype(np.float32) - shapes.PALETTE[None, None].astype(np.float32)
  return np.linalg.norm(diff, axis=-1).min(-1)


# ---------------------------------------------------------------------------------------------
# shapes.py


def test_make_example_is_deterministic():
  a, b, c = shapes.make_example(3, 7), shapes.make_example(3, 7), shapes.make_example(3, 8)
  np.testing.assert_array_equal(a['image'], b['image'])
  assert a['caption'] == b['caption']
  np.testing.assert_array_equal(a['objects'], b['objects'])
  assert not np.array_equal(a['image'], c['image'])
  assert not np.array_equal(a['image'], shapes.make_example(4, 7)['image'])


@pytest.mark.parametrize('image_size', [32, 64])
def test_ground_truth_matches_pixels(image_size):
  for index in range(200):
    ex = shapes.make_example(0, index, image_size)
    image, objects = ex['image'], ex['objects']
    assert image.shape == (image_size, image_size, 3) and image.dtype == np.uint8
    assert 1 <= ex['num_objects'] <= 3
    assert (objects[ex['num_objects'] :] == -1).all()
    decoded = shapes.scene_from_objects(objects, ex['num_objects'])
    assert len({o.position for o in decoded}) == len(decoded)  # distinct cells

    covered = np.zeros(image.shape[:2], bool)
    for obj, row in zip(decoded, objects):
      # The object's exact palette colour fills a sizeable part of its grid cell.
      r, c = shapes.POSITION_CELLS[obj.position]
      lo, hi = image_size * np.array([[r, c], [r + 1, c + 1]]) // 3
      cell = image[lo[0] : hi[0], lo[1] : hi[1]]
      hits = (cell == shapes.COLORS[obj.color]).all(-1).sum()
      assert hits >= 0.5 * shapes.object_side(obj.size, image_size) ** 2, (index, obj)
      covered[lo[0] : hi[0], lo[1] : hi[1]] = True
      assert list(row) == [
        shapes.SHAPES.index(obj.shape),
        shapes.COLOR_NAMES.index(obj.color),
        shapes.SIZES.index(obj.size),
        shapes.POSITIONS.index(obj.position),
      ]

    # Off-palette (background) pixels are far from every palette colour, and cells without an
    # object hold background only.
    dist = _palette_distance(image)
    assert dist[dist > 0].min() > 60
    assert (dist[~covered] > 60).all()

    words = ex['caption'].split()
    for obj in decoded:
      assert obj.color in words
      assert any(w in words for w in shapes.SHAPE_WORDS[obj.shape])


def test_objects_never_touch():
  """Objects of one colour must stay separate connected components (1 px gutter)."""
  rng = np.random.default_rng(1)
  for _ in range(300):
    scene = shapes.sample_scene(rng)
    boxes = [shapes.object_box(o, j, 32) for o, j in zip(scene.objects, scene.jitter)]
    for i, (t1, l1, s1) in enumerate(boxes):
      for t2, l2, s2 in boxes[i + 1 :]:
        gap_y = max(t2 - (t1 + s1), t1 - (t2 + s2))
        gap_x = max(l2 - (l1 + s1), l1 - (l2 + s2))
        assert max(gap_y, gap_x) >= 1


def test_background_is_smooth_and_muted():
  scene = shapes.sample_scene(np.random.default_rng(0))
  background = shapes.render(dataclasses.replace(scene, objects=(), jitter=()))
  steps = np.abs(np.diff(background.astype(int), axis=0)).max()
  assert steps <= 12  # no hard edges
  spread = (background.max(-1).astype(int) - background.min(-1)).max()
  assert spread < 80  # low saturation
  assert background.std(axis=(0, 1)).max() > 1  # textured, not flat


def test_caption_format_and_vocabulary():
  vocab = set(shapes.vocabulary())
  assert shapes.vocabulary() == sorted(vocab)
  rng = np.random.default_rng(0)
  for _ in range(1000):
    scene = shapes.sample_scene(rng)
    text = shapes.caption(scene, rng)
    assert text == text.lower() and all(ch.isalpha() or ch == ' ' for ch in text)
    assert set(text.split()) <= vocab
    for obj in scene.objects:
      assert any(p in text for p in shapes.POSITION_WORDS[obj.position])
      assert any(s in text.split() for s in shapes.SIZE_WORDS[obj.size])


# ---------------------------------------------------------------------------------------------
# TFDS builder and pipeline


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory):
  from tcts_jax.data import shapes_tfds

  path = str(tmp_path_factory.mktemp('tfds'))
  shapes_tfds.build('tiny', path)
  return path


def test_tfds_tiny_build(data_dir):
  from tcts_jax.data import shapes_tfds

  builder = shapes_tfds.build('tiny', data_dir)  # second call: already prepared
  assert builder.info.splits['train'].num_examples == 512
  assert builder.info.splits['test'].num_examples == 128
  train, test = builder.as_data_source('train'), builder.as_data_source('test')
  # Records keep generation order.
  ref = shapes.make_example(builder.split_seed('test'), 5)
  np.testing.assert_array_equal(test[5]['image'], ref['image'])
  assert test[5]['caption'].decode() == ref['caption']
  # The held-out split is a different stream.
  train_images = {train[i]['image'].tobytes() for i in range(len(train))}
  assert not any(test[i]['image'].tobytes() in train_images for i in range(len(test)))


def tiny_shapes(data_dir):
  from tcts_jax.data.captioned_shapes import CaptionedShapes

  return CaptionedShapes('tiny', data_dir)


def test_loader_shapes_and_dtypes(data_dir):
  from tcts_jax.data import pipeline

  it = pipeline.make_loader(tiny_shapes(data_dir), 'train', 8, process_index=0, process_count=1)
  batch = next(it)
  assert set(batch) == {'image', 'caption', 'objects', 'num_objects', 'index'}
  assert batch['image'].shape == (8, 32, 32, 3) and batch['image'].dtype == np.uint8
  assert batch['caption'].shape == (8,) and all(isinstance(c, str) for c in batch['caption'])
  assert batch['objects'].shape == (8, 3, 4) and batch['objects'].dtype == np.int32
  assert batch['num_objects'].shape == (8,) and batch['num_objects'].dtype == np.int32
  assert batch['index'].shape == (8,) and batch['index'].dtype == np.int32


def test_loader_index_is_the_record_number(data_dir):
  # Shuffled, sharded and repeated batches still name each example's record: per-record caches key on it.
  from tcts_jax.data import pipeline, shapes_tfds

  source = shapes_tfds.build('tiny', data_dir).as_data_source('test')
  seen = []
  for process_index in range(2):
    for b in pipeline.make_loader(
      tiny_shapes(data_dir), 'test', 16, num_epochs=2, process_index=process_index, process_count=2
    ):
      for index, image in zip(b['index'], b['image']):
        np.testing.assert_array_equal(image, source[int(index)]['image'])
        seen.append(int(index))
  assert sorted(seen) == sorted(2 * list(range(tiny_shapes(data_dir).num_records('test'))))


def test_loader_epochs_determinism_and_tokenize(data_dir):
  from tcts_jax.data import pipeline, shapes_tfds

  def tokenize(text):
    ids = [shapes.vocabulary().index(w) + 1 for w in text.split()][:48]
    return np.pad(np.array(ids, np.int32), (0, 48 - len(ids)))

  dataset, kwargs = tiny_shapes(data_dir), dict(process_index=0, process_count=1)
  one = list(pipeline.make_loader(dataset, 'test', 50, num_epochs=1, drop_remainder=False, tokenize=tokenize, **kwargs))
  assert [len(b['caption']) for b in one] == [50, 50, 28]
  assert all(b['text_ids'].shape == (len(b['caption']), 48) and b['text_ids'].dtype == np.int32 for b in one)
  np.testing.assert_array_equal(one[0]['text_ids'][0], tokenize(one[0]['caption'][0]))
  again = list(
    pipeline.make_loader(dataset, 'test', 50, num_epochs=1, drop_remainder=False, tokenize=tokenize, **kwargs)
  )
  assert all((a['image'] == b['image']).all() for a, b in zip(one, again))
  other_seed = next(pipeline.make_loader(dataset, 'test', 50, seed=1, **kwargs))
  assert not np.array_equal(one[0]['image'], other_seed['image'])
  unshuffled = next(pipeline.make_loader(dataset, 'test', 4, shuffle=False, **kwargs))
  test_seed = shapes_tfds.build('tiny', data_dir).split_seed('test')
  assert list(unshuffled['caption']) == [shapes.make_example(test_seed, i)['caption'] for i in range(4)]


def test_loader_sharding_is_disjoint(data_dir):
  from tcts_jax.data import pipeline

  seen = []
  for process_index in range(2):
    batches = pipeline.make_loader(
      tiny_shapes(data_dir), 'test', 16, num_epochs=1, process_index=process_index, process_count=2
    )
    seen.append({image.tobytes() for b in batches for image in b['image']})
  assert len(seen[0]) == len(seen[1]) == 64
  assert not seen[0] & seen[1]


def test_reading_does_not_import_tensorflow(data_dir):
  code = (
    'import sys\n'
    'from tcts_jax.data import pipeline\n'
    'from tcts_jax.data.captioned_shapes import CaptionedShapes\n'
    f'it = pipeline.make_loader(CaptionedShapes("tiny", {data_dir!r}), "train", 4, '
    'process_index=0, process_count=1)\n'
    'next(it)\n'
    'assert "tensorflow" not in sys.modules, "tensorflow imported"\n'
  )
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-2000:]
