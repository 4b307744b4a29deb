"""MS-COCO captions and CUB-200 with Reed et al.'s captions (tcts_jax/data/coco.py, cub.py), read from tiny
directories written here in exactly the real layouts: official caption JSON, Karpathy's split file, Reed's
text_c10 and class lists, CUB's own split files."""

import json

import ml_collections
import PIL.Image
import pytest

from tcts_jax.data import get_dataset, pipeline


def write_image(path, colour, size=(40, 30)):
  path.parent.mkdir(parents=True, exist_ok=True)
  PIL.Image.new('RGB', size, colour).save(path, format='JPEG')


def captions_of(image_id):
  return [f'photo {image_id} caption {k}' for k in range(5)]


def write_coco(root, year):
  """2 train and 2 val images; image 3 of train has no caption (COCO has a few such): it is left out."""
  prefix = {'2014': 'COCO_{part}2014_', '2017': ''}[year]
  (root / 'annotations').mkdir(parents=True)
  for part, ids in (('train', [1, 2, 3]), ('val', [7, 8])):
    images, annotations = [], []
    for image_id in ids:
      name = f'{prefix.format(part=part)}{image_id:012d}.jpg'
      write_image(root / f'{part}{year}' / name, (image_id * 30, 0, 0))
      images.append({'id': image_id, 'file_name': name, 'height': 30, 'width': 40, 'license': 1})
      if image_id != 3:
        annotations += [
          {'id': 100 * image_id + k, 'image_id': image_id, 'caption': c + ' \n'}
          for k, c in enumerate(captions_of(image_id))
        ]
    (root / 'annotations' / f'captions_{part}{year}.json').write_text(
      json.dumps({'info': {}, 'licenses': [], 'images': images[::-1], 'annotations': annotations})
    )


def data_config(name, folder, data_dir, **extra):
  return ml_collections.ConfigDict(dict(name=name, folder=str(folder), image_size=16, data_dir=str(data_dir), **extra))


def test_coco_2017_official_splits_keep_every_caption(tmp_path):
  write_coco(tmp_path / 'coco', '2017')
  dataset = get_dataset(data_config('coco', tmp_path / 'coco', tmp_path / 'tfds', year='2017'))
  assert dataset.benchmark == 'coco2017'
  assert dataset.num_records('train') == 2 and dataset.num_records('test') == 2
  test = dataset.held_out('test', 10)
  assert test.captions == [captions_of(7)[0], captions_of(8)[0]]  # evaluations prompt with the first
  assert test.images.shape == (2, 16, 16, 3) and abs(int(test.images[0, 8, 8, 0]) - 210) <= 3
  record = dataset.source('train')[0]
  assert [c.decode() if isinstance(c, bytes) else c for c in record['captions']] == captions_of(1)
  assert dataset.vocabulary() == sorted({w for i in (1, 2) for c in captions_of(i) for w in c.split()})


def test_training_draws_each_caption_deterministically(tmp_path):
  write_coco(tmp_path / 'coco', '2017')
  dataset = get_dataset(data_config('coco', tmp_path / 'coco', tmp_path / 'tfds', year='2017'))
  one = pipeline.make_loader(dataset, 'train', 2, seed=5, process_index=0, process_count=1)
  drawn = [next(one)['caption'] for _ in range(40)]
  seen = {c for batch in drawn for c in batch}
  assert seen == set(captions_of(1) + captions_of(2))  # every caption comes up over the visits
  # The draw is a function of (seed, position in the global order): two processes see the same captions.
  two = [pipeline.make_loader(dataset, 'train', 1, seed=5, process_index=p, process_count=2) for p in range(2)]
  assert [[*next(two[0])['caption'], *next(two[1])['caption']] for _ in range(40)] == [list(b) for b in drawn]
  # Unshuffled reads (encoding, evaluation) keep the first caption.
  plain = next(pipeline.make_loader(dataset, 'train', 2, shuffle=False, num_epochs=1, process_index=0, process_count=1))
  assert list(plain['caption']) == [captions_of(1)[0], captions_of(2)[0]]


def test_coco_2014_karpathy_split(tmp_path):
  root = tmp_path / 'coco'
  write_coco(root, '2014')
  karpathy = {
    'dataset': 'coco',
    'images': [
      {
        'filepath': 'train2014',
        'filename': 'COCO_train2014_000000000001.jpg',
        'split': 'train',
        'cocoid': 1,
        'sentences': [{'raw': 'A bird.', 'tokens': ['a', 'bird']}, {'raw': 'A  red bird.', 'tokens': []}],
      },
      {
        'filepath': 'val2014',
        'filename': 'COCO_val2014_000000000007.jpg',
        'split': 'restval',
        'cocoid': 7,
        'sentences': [{'raw': 'A dog.', 'tokens': []}],
      },
      {
        'filepath': 'val2014',
        'filename': 'COCO_val2014_000000000008.jpg',
        'split': 'test',
        'cocoid': 8,
        'sentences': [{'raw': 'A cat.', 'tokens': []}],
      },
      {
        'filepath': 'train2014',
        'filename': 'COCO_train2014_000000000002.jpg',
        'split': 'val',
        'cocoid': 2,
        'sentences': [{'raw': 'A cow.', 'tokens': []}],
      },
    ],
  }
  (tmp_path / 'dataset_coco.json').write_text(json.dumps(karpathy))
  cfg = data_config('coco', root, tmp_path / 'tfds', year='2014', split_file=str(tmp_path / 'dataset_coco.json'))
  dataset = get_dataset(cfg)
  assert dataset.benchmark == 'coco2014/karpathy'
  assert dataset.held_out('train', 5).captions == ['A bird.', 'A dog.']  # train + restval
  assert dataset.held_out('test', 5).captions == ['A cat.'] and dataset.held_out('validation', 5).captions == ['A cow.']


def write_cub(root, reed_classes=True):
  classes = ['001.Black_footed_Albatross', '002.Laysan_Albatross', '003.Sooty_Albatross']
  images = []
  for c, name in enumerate(classes):
    for k in range(2):
      image = f'{name}/{name.split(".")[1]}_{k:04d}_{c}{k}.jpg'
      write_image(root / 'CUB_200_2011' / 'images' / image, (0, 80 * c, 0))
      caption_file = (root / 'text_c10' / image).with_suffix('.txt')
      caption_file.parent.mkdir(parents=True, exist_ok=True)
      caption_file.write_text(''.join(f'this bird {c} {k} has feature {j}\n' for j in range(10)))
      images.append(image)
  if reed_classes:
    (root / 'trainvalclasses.txt').write_text('\n'.join(classes[:2]) + '\n')
    (root / 'testclasses.txt').write_text(classes[2] + '\n')
  else:
    (root / 'CUB_200_2011' / 'images.txt').write_text(''.join(f'{i + 1} {im}\n' for i, im in enumerate(images)))
    (root / 'CUB_200_2011' / 'train_test_split.txt').write_text(
      ''.join(f'{i + 1} {int(i % 2 == 0)}\n' for i in range(len(images)))
    )
  return images


@pytest.mark.parametrize('reed_classes', [True, False])
def test_cub_ten_captions_and_either_split(tmp_path, reed_classes):
  images = write_cub(tmp_path / 'cub', reed_classes)
  dataset = get_dataset(data_config('cub', tmp_path / 'cub', tmp_path / 'tfds'))
  test = dataset.held_out('test', 10)
  if reed_classes:  # class-disjoint: the third species is never trained on
    assert dataset.num_records('train') == 4 and test.captions == [
      'this bird 2 0 has feature 0',
      'this bird 2 1 has feature 0',
    ]
  else:  # CUB's own split: odd image ids train
    assert dataset.num_records('train') == 3 and len(test) == 3
  assert len(dataset.source('train')[0]['captions']) == 10
  assert test.images.shape == (len(test), 16, 16, 3)
  assert len(images) == 6


@pytest.mark.parametrize(
  'name, breaks, message',
  [
    ('coco', lambda root: (root / 'annotations' / 'captions_val2017.json').unlink(), 'COCO annotations not found'),
    ('coco', lambda root: (root / 'val2017' / '000000000008.jpg').unlink(), 'COCO image not found'),
    ('coco', lambda root: (root / 'annotations' / 'captions_val2017.json').write_text('{"images": ['), 'not JSON'),
    (
      'coco',
      lambda root: (root / 'annotations' / 'captions_val2017.json').write_text('[]'),
      'not a COCO captions file',
    ),
    ('cub', lambda root: (root / 'text_c10' / '002.Laysan_Albatross').rename(root / 'gone'), 'no captions for'),
    ('cub', lambda root: (root / 'testclasses.txt').unlink(), 'no split in'),
  ],
)
def test_broken_directories_are_named(tmp_path, name, breaks, message):
  root = tmp_path / name
  write_coco(root, '2017') if name == 'coco' else write_cub(root)
  breaks(root)
  with pytest.raises((ValueError, FileNotFoundError), match=message):
    get_dataset(data_config(name, root, tmp_path / 'tfds', year='2017')).num_records('train')


def test_bad_year_and_karpathy_on_2017(tmp_path):
  write_coco(tmp_path / 'coco', '2017')
  with pytest.raises(ValueError, match='data.year must be one of'):
    get_dataset(data_config('coco', tmp_path / 'coco', tmp_path / 'tfds', year='2015'))
  cfg = data_config('coco', tmp_path / 'coco', tmp_path / 'tfds', year='2017', split_file=str(tmp_path / 'k.json'))
  with pytest.raises(ValueError, match="Karpathy's split file names COCO 2014 images"):
    get_dataset(cfg).num_records('train')


def test_paper_size_configs_match_the_paper_and_their_smoke_recipe_runs(tmp_path):
  """configs/coco.py: the generator has the paper's parameter count (310M on MS-COCO, 83M on CUB; built
  abstractly); its `,smoke` variant, through the CLIs on the fake COCO directory: trains the tokenizer and the
  CLIP-conditioned generator for 2 steps each, exports, samples, and evaluates with CLIP-S and MID (the tiny
  CLIP as eval.clip_weights)."""
  import jax

  from tcts_jax.models import abstract_params, build_models
  from tcts_jax.utils import checkpoint
  from tcts_jax.utils.config import load_config
  from tests.conftest import REPO, run_cli_batch

  for arg, expected in (('generator', 310e6), ('generator,cub', 83e6)):
    config = load_config(f'configs/coco.py:{arg}')
    assert config.text.encoder == 'clip' and config.text.clip_dir is None  # the user's CLIP ViT-B/32 directory
    with config.unlocked():  # no real CLIP here: the learned encoder has CLIP B/32's width, 512
      config.text.encoder = 'learned'
    params = abstract_params(build_models(config, ['word']), config.data.image_size)
    count = sum(x.size for x in jax.tree.leaves(params['generator']))
    assert abs(count - expected) < 0.01 * expected, (arg, count)
    assert build_models(config, ['word']).grid_size == 32 and config.train.compute_dtype == 'bfloat16'
  write_coco(tmp_path / 'coco', '2017')
  common = [
    f'--config.data.folder={tmp_path / "coco"}',
    '--config.data.year=2017',
    f'--config.data.data_dir={tmp_path / "tfds"}',
    '--config.train.num_steps=2',
    '--config.train.image_every=0',
  ]
  runs = [
    (
      'tcts_jax.train',
      ['--config=configs/coco.py:tokenizer,smoke', f'--workdir={tmp_path / "tok"}', *common],
      REPO,
      'c',
    ),
    (
      'tcts_jax.train',
      [
        '--config=configs/coco.py:generator,smoke',
        f'--workdir={tmp_path / "gen"}',
        *common,
        f'--config.tokenizer_checkpoint={tmp_path / "tok"}',
      ],
      REPO,
      'c',
    ),
  ]
  weights = tmp_path / 'weights'
  runs += [
    (
      'tcts_jax.export',
      ['--config=configs/coco.py:sample,smoke', f'--tokenizer={tmp_path / "tok"}', f'--generator={tmp_path / "gen"}']
      + [f'--out={weights}'],
      REPO,
      'c',
    ),
    (
      'tcts_jax.sample',
      ['--config=configs/coco.py:sample,smoke', f'--weights={weights}', '--prompt=a zebra', f'--out={tmp_path}/z.png'],
      REPO,
      'c',
    ),
    (
      'tcts_jax.evaluate',
      [
        '--config=configs/coco.py:eval,smoke',
        f'--weights={weights}',
        *common[:3],
        f'--workdir={tmp_path / "eval"}',
        f'--config.eval.clip_weights={REPO / "tests/fixtures/tiny_clip"}',
        "--config.eval.grid=('purity@8',)",
        '--config.eval.refinement.base=',
        '--config.eval.bootstrap=10',
      ],
      REPO,
      'c',
    ),
  ]
  done = run_cli_batch(runs)
  for r in done:
    assert r.returncode == 0, r.stderr[-3000:]
  assert '[tokenizer] step 2/2' in done[0].stdout and '[generator] step 2/2' in done[1].stdout
  # The generator stage trained the generator alone: the CLIP text tower is frozen, and export wrote it.
  assert set(checkpoint.latest_params(tmp_path / 'gen')) == {'generator'}
  assert (weights / 'text.safetensors').is_file() and (weights / 'clip_text' / 'tokenizer_config.json').is_file()
  assert PIL.Image.open(tmp_path / 'z.png').size[0] >= 32
  results = json.loads((tmp_path / 'eval' / 'results.json').read_text())
  row = results['rows'][[r['name'] for r in results['rows']].index('purity@8')]
  assert row['metrics']['clip_score'] is not None and row['metrics']['mid'] is not None, results['notes']
