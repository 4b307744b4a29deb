"""The image-caption folder dataset (tcts_jax/data/image_folder.py), a second registry entry: reading, splits
and bad folders; then trained, sampled and evaluated through the real CLIs with configs/image_folder.py."""

import json

import ml_collections
import numpy as np
import PIL.Image
import pytest

from tcts_jax.data import get_dataset, pipeline, shapes
from tests.conftest import REPO, run_cli
from tests.test_cli import assert_one_line_error

CLIP_DIR = REPO / 'tests' / 'fixtures' / 'tiny_clip'


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


def test_train_sample_and_evaluate_a_folder_through_the_clis(folder, tmp_path):
  """A dataset is one module + one config: the same commands as for captioned shapes, on a user's folder."""
  root, _ = folder
  work = tmp_path / 'run'
  common = [f'--config.data.folder={root}', f'--config.data.data_dir={tmp_path / "tfds"}']
  steps = ['--config.train.num_steps=6', '--config.train.log_every=3', '--config.train.image_every=0']
  r = run_cli(
    'tcts_jax.train', '--config=configs/image_folder.py:tokenizer,tiny', f'--workdir={work / "tok"}', *common, *steps
  )
  assert r.returncode == 0, r.stderr[-3000:]
  r = run_cli(
    'tcts_jax.train',
    '--config=configs/image_folder.py:generator,tiny',
    f'--workdir={work / "gen"}',
    f'--config.tokenizer_checkpoint={work / "tok"}',
    *common,
    *steps,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  r = run_cli(
    'tcts_jax.export',
    '--config=configs/image_folder.py:sample,tiny',
    f'--tokenizer={work / "tok"}',
    f'--generator={work / "gen"}',
    f'--out={work / "weights"}',
    *common,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  vocabulary = json.loads((work / 'weights' / 'vocab.json').read_text())
  assert 'triangle' in vocabulary and 'zebra' not in vocabulary
  r = run_cli(
    'tcts_jax.sample',
    '--config=configs/image_folder.py:sample,tiny',
    f'--weights={work / "weights"}',
    '--prompt=a large red circle in the middle',
    '--num_samples=2',
    f'--out={work / "grid.png"}',
    *common,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert np.asarray(PIL.Image.open(work / 'grid.png')).ndim == 3
  r = run_cli(
    'tcts_jax.evaluate',
    '--config=configs/image_folder.py:eval,smoke,tiny',
    f'--weights={work / "weights"}',
    f'--workdir={work / "eval"}',
    f'--config.eval.clip_weights={CLIP_DIR}',
    '--config.eval.num_images=8',
    "--config.eval.grid=('purity@4',)",
    '--config.eval.refinement.base=',
    *common,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  results = json.loads((work / 'eval' / 'results.json').read_text())
  assert results['benchmark'] == f'image_folder/{root.name}'
  assert [row['name'] for row in results['rows']] == ['purity@4', 'VQ reconstruction']
  assert all(row['metrics']['clip_score']['value'] is not None for row in results['rows'])
  assert 'inception_fid' in results['unavailable'] and 'no "real" reference row' in ' '.join(results['notes'])
  # The captioned-shapes checker does not apply to a folder: asking for it is a one-line error.
  r = run_cli(
    'tcts_jax.evaluate',
    '--config=configs/image_folder.py:eval,smoke,tiny',
    f'--weights={work / "weights"}',
    f'--workdir={work / "eval2"}',
    "--config.eval.metrics=('alignment',)",
    *common,
  )
  assert_one_line_error(r, "unknown metric 'alignment' for dataset 'image_folder'")
