"""The image-caption folder dataset (tcts_jax/data/image_folder.py), a second registry entry: reading, splits
and bad folders. Trained, sampled and evaluated through the real CLIs by tests/test_docs_commands.py."""

import json

import ml_collections
import numpy as np
import PIL.Image
import pytest

from tcts_jax.data import get_dataset, pipeline, shapes
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error


def write_folder(root, count=40, size=48, test_every=5):
  """`count` captioned-shapes renders at `size` px as a user's folder; every `test_every`-th record names the
  test split, the others are left to the hash split. Returns the records written."""
  (root / 'img').mkdir(parents=True)
  records = []
  for i in range(count):
    e = shapes.make_example(11, i, size)
    PIL.Image.fromarray(e['image']).save(root / 'img' / f'{i:03d}.png')
    record = {'file_name': f'img/{i:03d}.png', 'caption': e['caption']}
    if i % test_every == 0:
      record['split'] = 'test'
    records.append(record)
  (root / 'captions.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in records))
  return records


def folder_config(folder, data_dir, **extra):
  return ml_collections.ConfigDict(
    dict(name='image_folder', folder=str(folder), image_size=32, test_fraction=0.1, data_dir=str(data_dir), **extra)
  )


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp('my_images')
  return root, write_folder(root)


def test_folder_reads_images_captions_and_splits(folder, tmp_path):
  root, records = folder
  dataset = get_dataset(folder_config(root, tmp_path))
  test = dataset.held_out('test', 100)
  forced = [r['caption'] for r in records if r.get('split') == 'test']
  assert set(forced) <= set(test.captions)  # records that name their split keep it
  assert dataset.num_records('train') + dataset.num_records('test') == len(records)
  assert test.images.shape[1:] == (32, 32, 3) and test.images.dtype == np.uint8 and test.fields == {}
  # Records keep the captions file's order; images are resized 48 -> 32 (area averaging), not re-rendered.
  first = next(r for r in records if r['caption'] == test.captions[0])
  original = np.asarray(PIL.Image.open(root / first['file_name']).resize((32, 32), PIL.Image.BOX))
  np.testing.assert_array_equal(test.images[0], original)
  assert test.captions == [r['caption'] for r in records if r['caption'] in set(test.captions)]
  # The vocabulary is every word of the train captions.
  train = dataset.held_out('train', 100)
  assert dataset.vocabulary() == sorted({w for c in train.captions for w in c.split()})
  batch = next(pipeline.make_loader(dataset, 'train', 4, process_index=0, process_count=1))
  assert set(batch) == {'image', 'caption', 'index'} and batch['image'].shape == (4, 32, 32, 3)


def test_a_changed_folder_is_rebuilt(tmp_path):
  root = tmp_path / 'imgs'
  write_folder(root, count=12, test_every=3)
  dataset = get_dataset(folder_config(root, tmp_path / 'tfds'))
  assert dataset.num_records('train') + dataset.num_records('test') == 12
  lines = (root / 'captions.jsonl').read_text().splitlines()
  (root / 'captions.jsonl').write_text('\n'.join(lines[:9]) + '\n')
  again = get_dataset(folder_config(root, tmp_path / 'tfds'))
  assert again.num_records('train') + again.num_records('test') == 9


def test_non_square_images_are_centre_cropped(tmp_path):
  from tcts_jax.data.image_folder import square_image

  image = np.zeros((20, 40, 3), np.uint8)
  image[:, 10:30] = 255  # the centre square is white, the sides black
  PIL.Image.fromarray(image).save(tmp_path / 'wide.png')
  out = square_image(tmp_path / 'wide.png', 10)
  assert out.shape == (10, 10, 3) and (out == 255).all()


@pytest.mark.parametrize(
  'write, message',
  [
    (lambda root: None, 'no captions file'),
    (lambda root: (root / 'captions.jsonl').write_text('{"file_name": "a.png", "caption": "x"\n'), 'not a JSON object'),
    (lambda root: (root / 'captions.jsonl').write_text('{"file_name": "a.png"}\n'), 'non-empty "caption"'),
    (
      lambda root: (root / 'captions.jsonl').write_text('{"file_name": "gone.png", "caption": "x"}\n'),
      'image not found',
    ),
    (
      lambda root: (root / 'captions.jsonl').write_text('{"file_name": "a.png", "caption": "x", "split": "val"}\n'),
      'split must be one of',
    ),
    (lambda root: (root / 'captions.jsonl').write_text('{"file_name": "a.png", "caption": "x"}\n'), 'split is empty'),
  ],
)
def test_bad_folders_fail_in_one_line(tmp_path, write, message):
  root = tmp_path / 'bad'
  root.mkdir()
  PIL.Image.new('RGB', (8, 8)).save(root / 'a.png')
  write(root)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    get_dataset(folder_config(root, tmp_path / 'tfds')).builder()


def test_captions_csv_works_too(tmp_path):
  root = tmp_path / 'csv'
  records = write_folder(root, count=10, test_every=2)
  (root / 'captions.jsonl').unlink()
  (root / 'captions.csv').write_text(
    'file_name,caption,split\n' + ''.join(f'{r["file_name"]},"{r["caption"]}",{r.get("split", "")}\n' for r in records)
  )
  dataset = get_dataset(folder_config(root, tmp_path / 'tfds'))
  assert dataset.num_records('test') >= 5 and dataset.held_out('test', 1).captions[0] == records[0]['caption']


def test_the_shapes_checker_is_no_metric_of_a_folder(folder, tmp_path):
  # Metrics are checked before any weights load or images are made. (The folder trained, sampled and
  # evaluated through the CLIs: tests/test_docs_commands.py runs the documented commands.)
  root, _ = folder
  r = run_cli(
    'tcts_jax.evaluate',
    '--config=configs/image_folder.py:eval,smoke,tiny',
    f'--weights={tmp_path / "none"}',
    f'--workdir={tmp_path / "eval"}',
    "--config.eval.metrics=('alignment',)",
    f'--config.data.folder={root}',
    f'--config.data.data_dir={tmp_path / "tfds"}',
  )
  assert_one_line_error(r, "unknown metric 'alignment' for dataset 'image_folder'")
  assert not (tmp_path / 'eval').exists()


def test_stages_that_need_ground_truth_refuse_a_folder(folder, tmp_path):
  from tcts_jax.training.trainer import train_and_evaluate
  from tcts_jax.utils.config import load_config

  root, _ = folder
  config = load_config('configs/shapes.py:features,tiny')
  with config.unlocked():
    config.data = folder_config(root, tmp_path / 'tfds')
  with pytest.raises(
    ValueError, match="dataset 'image_folder' has no ground truth to train the FID-shapes feature network on"
  ):
    train_and_evaluate(config, tmp_path / 'work')
