r"""MS-COCO captions 2014 / 2017 from the official files a user already has (`config.data.name = 'coco'`).

  COCO_ROOT/annotations/captions_train2017.json  {"images": [{"id", "file_name", ...}],
  COCO_ROOT/annotations/captions_val2017.json     "annotations": [{"image_id", "caption", ...}]}
  COCO_ROOT/train2017/000000000009.jpg ...       (2014: captions_train2014.json, train2014/COCO_train2014_*.jpg)
  COCO_ROOT/val2017/...

Every image keeps all its captions (5, sometimes 6 or 7): training draws one of them each time the image
is visited (data/pipeline.py), evaluations prompt with the first. Splits: train = train<year>, test =
val<year>; or, with `data.split_file` = Karpathy's `dataset_coco.json` (2014 only, the split text-to-image
papers evaluate on), train = its train + restval, validation = its val, test = its test (5,000 images).
Images are centre-cropped and resized to `data.image_size`; the TFDS builder of image_folder.py stores them.

  python -m tcts_jax.data.coco --folder=COCO_ROOT --year=2017 --image_size=256 [--data_dir=...]   # build it once
"""

import collections
import json
import pathlib

from tcts_jax.data.image_folder import ImageFolder, build

YEARS = ('2014', '2017')
KARPATHY_SPLITS = {'train': 'train', 'restval': 'train', 'val': 'validation', 'test': 'test'}


def _read_json(path: pathlib.Path) -> dict:
  if not path.is_file():
    raise FileNotFoundError(f'COCO annotations not found: {path}')
  try:
    return json.loads(path.read_text(encoding='utf-8'))
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not JSON ({e.msg} at line {e.lineno})') from None


def official_records(root: pathlib.Path, year: str) -> list:
  """Records of train<year> (split train) and val<year> (split test) from the official caption files."""
  records = []
  for part, split in (('train', 'train'), ('val', 'test')):
    path = root / 'annotations' / f'captions_{part}{year}.json'
    data = _read_json(path)
    if not isinstance(data, dict) or 'images' not in data or 'annotations' not in data:
      raise ValueError(f'{path}: not a COCO captions file (no "images" and "annotations")')
    captions = collections.defaultdict(list)
    for a in data['annotations']:
      captions[a['image_id']].append(' '.join(str(a['caption']).split()))
    for image in sorted(data['images'], key=lambda i: i['id']):
      if captions[image['id']]:  # COCO lists a few images without captions: nothing to train on
        records.append(
          {'file_name': f'{part}{year}/{image["file_name"]}', 'captions': captions[image['id']], 'split': split}
        )
  return records


def karpathy_records(root: pathlib.Path, split_file: str) -> list:
  """Records of Karpathy's split file (`images`: filepath, filename, split, sentences[].raw)."""
  path = pathlib.Path(split_file)
  data = _read_json(path)
  if not isinstance(data, dict) or not isinstance(data.get('images'), list):
    raise ValueError(f'{path}: not a Karpathy split file (no "images" list)')
  records = []
  for image in data['images']:
    if image.get('split') not in KARPATHY_SPLITS:
      raise ValueError(f'{path}: image {image.get("filename")!r} has split {image.get("split")!r}')
    captions = [' '.join(s['raw'].split()) for s in image['sentences']]
    records.append(
      {
        'file_name': f'{image["filepath"]}/{image["filename"]}',
        'captions': captions,
        'split': KARPATHY_SPLITS[image['split']],
      }
    )
  return records


def read_records(folder, layout: str, split_file: str = '') -> list:
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise FileNotFoundError(f'COCO root not found: {root}')
  year = layout.removeprefix('coco')
  if split_file and year != '2014':
    raise ValueError(f"Karpathy's split file names COCO 2014 images; data.year is {year}")
  records = karpathy_records(root, split_file) if split_file else official_records(root, year)
  missing = next((r['file_name'] for r in records if not (root / r['file_name']).is_file()), None)
  if missing:
    raise FileNotFoundError(f'COCO image not found: {root / missing}')
  return records


class Coco(ImageFolder):
  name = 'coco'
  needs = 'the COCO root: annotations/captions_*.json and the train/val image folders'

  def __init__(self, folder, year: str, image_size: int, data_dir=None, split_file=''):
    if str(year) not in YEARS:
      raise ValueError(f'data.year must be one of {YEARS}, got {year!r}')
    self.layout = f'coco{year}'
    super().__init__(folder, image_size, 0.0, data_dir, split_file)

  @property
  def benchmark(self) -> str:
    return f'{self.layout}{"/karpathy" if self.split_file else ""}'


def get_dataset(data_config) -> Coco:
  c = data_config
  return Coco(c.get('folder'), str(c.get('year', '2017')), c.image_size, c.data_dir, c.get('split_file') or '')


if __name__ == '__main__':
  from absl import flags

  from tcts_jax.data.tfds_builder import run_build_command

  flags.DEFINE_string('folder', None, 'The COCO root (annotations/ and the image folders).', required=True)
  flags.DEFINE_enum('year', '2017', YEARS, 'Which release.')
  flags.DEFINE_string('split_file', '', "Karpathy's dataset_coco.json (2014 only).")
  flags.DEFINE_integer('image_size', 256, 'Side of the square images stored.', lower_bound=1)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: ~/tensorflow_datasets).')
  F = flags.FLAGS
  run_build_command(lambda: build(F.folder, F.image_size, 0.0, F.data_dir, f'coco{F.year}', F.split_file))
