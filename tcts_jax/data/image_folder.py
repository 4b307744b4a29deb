r"""A folder of images with captions, the layout users already have (`config.data.name = 'image_folder'`).

  FOLDER/
    captions.jsonl      one JSON object per line: {"file_name": "img/0001.png", "caption": "a red car"}
                        ("text" may stand for "caption", as in HF imagefolder's metadata.jsonl)
    img/0001.png ...    paths relative to FOLDER

`captions.csv` (header `file_name,caption`) or `metadata.jsonl` work too. A record may name its split
(`"split": "train"` or `"test"`); otherwise a record goes to the test split when the hash of its file name
falls below `test_fraction`, so adding images never moves old ones between splits. Images are centre-cropped
to a square and resized to `image_size` (area averaging when shrinking, bicubic when enlarging).

The TFDS builder `image_caption_folder` stores them as ARRAY_RECORD under `data_dir` (random access without
TensorFlow), once per folder content: its config name carries a hash of the captions file and of the image
files' names, sizes and modification times, so an edited folder is rebuilt. The vocabulary (every caption
word of the train split) is kept in the dataset's metadata.

Datasets in other layouts (MS-COCO, CUB-200: `coco.py`, `cub.py`) reach the same builder through `LAYOUTS`:
a module that lists the records (a file name, one or more captions, a split).

  python -m tcts_jax.data.image_folder --folder=FOLDER [--image_size=32 --data_dir=...]   # build it once
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import importlib
import json
import pathlib
import re

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from tcts_jax.data import Dataset
from tcts_jax.data.tfds_builder import ArrayRecordBuilder, run_build_command
from tcts_jax.models.text import WordTokenizer

CAPTION_FILES = ('captions.jsonl', 'metadata.jsonl', 'captions.csv')
SPLITS = ('train', 'test')


def captions_file(folder: pathlib.Path) -> pathlib.Path:
  for name in CAPTION_FILES:
    if (folder / name).is_file():
      return folder / name
  raise FileNotFoundError(f'no captions file in {folder}: expected one of {", ".join(CAPTION_FILES)}')


def read_records(folder) -> list:
  """[{'file_name', 'caption', 'split' (or None)}] of the folder's captions file, checked line by line."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise FileNotFoundError(f'image folder not found: {folder}')
  path = captions_file(folder)
  if path.suffix == '.csv':
    with open(path, newline='', encoding='utf-8') as f:
      rows = [(i + 2, row) for i, row in enumerate(csv.DictReader(f))]
  else:
    rows = []
    for i, line in enumerate(path.read_text(encoding='utf-8').splitlines()):
      if line.strip():
        try:
          rows.append((i + 1, json.loads(line)))
        except json.JSONDecodeError as e:
          raise ValueError(f'{path}:{i + 1}: not a JSON object ({e.msg})') from None
  records = []
  for line, row in rows:
    caption = row.get('caption', row.get('text'))
    if not isinstance(row, dict) or not row.get('file_name') or not isinstance(caption, str) or not caption.strip():
      raise ValueError(f'{path}:{line}: need a "file_name" and a non-empty "caption" (or "text")')
    split = row.get('split') or None
    if split is not None and split not in SPLITS:
      raise ValueError(f'{path}:{line}: split must be one of {SPLITS}, got {split!r}')
    if not (folder / row['file_name']).is_file():
      raise FileNotFoundError(f'{path}:{line}: image not found: {folder / row["file_name"]}')
    records.append({'file_name': row['file_name'], 'captions': [caption.strip()], 'split': split})
  if not records:
    raise ValueError(f'{path} lists no images')
  return records


# How a folder lists its images and captions: module whose `read_records(folder, split_file)` gives
# [{'file_name' (relative to the folder), 'captions' (one or more), 'split' (or None: hashed)}].
LAYOUTS = {
  'captions_file': 'tcts_jax.data.image_folder',
  'coco2014': 'tcts_jax.data.coco',
  'coco2017': 'tcts_jax.data.coco',
  'cub': 'tcts_jax.data.cub',
}


def layout_records(layout: str, folder, split_file: str = '') -> list:
  if layout not in LAYOUTS:
    raise ValueError(f'unknown image folder layout {layout!r}; expected one of {sorted(LAYOUTS)}')
  if layout == 'captions_file':
    return read_records(folder)
  module = importlib.import_module(LAYOUTS[layout])
  return module.read_records(folder, layout, split_file)


def assign_split(record: dict, test_fraction: float) -> str:
  if record['split']:
    return record['split']
  h = int(hashlib.sha256(record['file_name'].encode()).hexdigest()[:8], 16) / 2**32
  return 'test' if h < test_fraction else 'train'


def content_hash(folder: pathlib.Path, records: list) -> str:
  """A hash of the records (captions and splits) and of the image files' names, sizes and times."""
  h = hashlib.sha256(json.dumps(records, sort_keys=True).encode())
  for r in records:
    stat = (folder / r['file_name']).stat()
    h.update(f'{r["file_name"]}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
  return h.hexdigest()[:12]


def square_image(path: pathlib.Path, size: int) -> np.ndarray:
  """The image as (size, size, 3) uint8 RGB: centre-cropped to a square, then resized."""
  with PIL.Image.open(path) as im:
    image = im.convert('RGB')
  w, h = image.size
  side = min(w, h)
  image = image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
  if side != size:
    image = image.resize((size, size), PIL.Image.BOX if side > size else PIL.Image.BICUBIC)
  return np.asarray(image, np.uint8)


@dataclasses.dataclass
class ImageFolderConfig(tfds.core.BuilderConfig):
  folder: str = ''
  image_size: int = 32
  test_fraction: float = 0.1
  layout: str = 'captions_file'
  split_file: str = ''


class ImageCaptionFolder(ArrayRecordBuilder):
  """Images and captions from a folder (see the module docstring)."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.', '1.1.0': 'Every caption of a record (COCO: 5, CUB: 10).'}

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(s, s, 3)),
          'caption': tfds.features.Text(),  # the first: what evaluations prompt with
          'captions': tfds.features.Sequence(tfds.features.Text()),  # all: training draws one per visit
          'file_name': tfds.features.Text(),
        }
      ),
      metadata=tfds.core.MetadataDict(),
      disable_shuffling=True,  # records keep the captions file's order
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    records = layout_records(cfg.layout, cfg.folder, cfg.split_file)
    splits = sorted({assign_split(r, cfg.test_fraction) for r in records} | set(SPLITS))
    by_split = {split: [r for r in records if assign_split(r, cfg.test_fraction) == split] for split in splits}
    empty = [split for split, rs in by_split.items() if not rs]
    if empty:
      raise ValueError(
        f'image folder {cfg.folder}: the {empty[0]} split is empty ({len(records)} images, '
        f'test_fraction={cfg.test_fraction}); give records a "split" or change data.test_fraction'
      )
    words = sorted({w for r in by_split['train'] for c in r['captions'] for w in WordTokenizer.split(c)})
    self.info.metadata['vocabulary'] = words
    return {split: self._generate_examples(rs) for split, rs in by_split.items()}

  def _generate_examples(self, records):
    folder, size = pathlib.Path(self.builder_config.folder), self.builder_config.image_size
    for i, r in enumerate(records):
      # A numpy image would be encoded through a TF graph (slow start); PIL encodes a PIL image itself.
      image = PIL.Image.fromarray(square_image(folder / r['file_name'], size))
      yield i, {'image': image, 'caption': r['captions'][0], 'captions': r['captions'], 'file_name': r['file_name']}


def build(
  folder, image_size: int = 32, test_fraction: float = 0.1, data_dir=None, layout='captions_file', split_file=''
) -> ImageCaptionFolder:
  """The prepared builder of `folder` in `layout` (built the first time, and again whenever it changes)."""
  folder = pathlib.Path(folder).resolve()
  records = layout_records(layout, folder, split_file)
  slug = re.sub(r'[^a-z0-9]+', '_', folder.name.lower()).strip('_') or 'folder'
  name = f'{slug}_{image_size}px_{content_hash(folder, records)}'
  config = ImageFolderConfig(
    name=name,
    folder=str(folder),
    image_size=image_size,
    test_fraction=test_fraction,
    layout=layout,
    split_file=split_file,
    description=f'{folder} ({layout}) at {image_size}x{image_size}',
  )
  builder = ImageCaptionFolder(config=config, data_dir=data_dir)
  builder.download_and_prepare()
  return builder


class ImageFolder(Dataset):
  name = 'image_folder'
  layout = 'captions_file'
  needs = 'a directory with images and captions.jsonl'

  def __init__(self, folder, image_size: int = 32, test_fraction: float = 0.1, data_dir=None, split_file=''):
    if not folder:
      raise ValueError(f'the {self.name} dataset needs data.folder ({self.needs})')
    self.folder, self.image_size, self.test_fraction, self.data_dir = folder, image_size, test_fraction, data_dir
    self.split_file = split_file or ''

  @property
  def benchmark(self) -> str:
    return f'{self.name}/{pathlib.Path(self.folder).name}'

  @functools.cache
  def builder(self):
    return build(self.folder, self.image_size, self.test_fraction, self.data_dir, self.layout, self.split_file)

  def vocabulary(self) -> list:
    return list(self.builder().info.metadata['vocabulary'])


def get_dataset(data_config) -> ImageFolder:
  return ImageFolder(
    data_config.get('folder'), data_config.image_size, data_config.get('test_fraction', 0.1), data_config.data_dir
  )


if __name__ == '__main__':
  from absl import flags

  flags.DEFINE_string('folder', None, 'The image folder (images and captions.jsonl).', required=True)
  flags.DEFINE_integer('image_size', 32, 'Side of the square images stored.', lower_bound=1)
  flags.DEFINE_float(
    'test_fraction', 0.1, 'Fraction of unsplit records sent to the test split.', lower_bound=0, upper_bound=1
  )
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: ~/tensorflow_datasets).')
  F = flags.FLAGS
  run_build_command(lambda: build(F.folder, F.image_size, F.test_fraction, F.data_dir))
