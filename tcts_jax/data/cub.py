r"""CUB-200-2011 birds with Reed et al.'s 10 captions per image (`config.data.name = 'cub'`), in the layout
text-to-image code reads (Reed's cvpr2016_cub captions beside the CUB release):

  CUB_ROOT/CUB_200_2011/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg ...
  CUB_ROOT/text_c10/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.txt   (10 lines; or CUB_ROOT/text/)
  CUB_ROOT/trainvalclasses.txt, CUB_ROOT/testclasses.txt   (Reed's class-disjoint split: 150 / 50 class folders)

Without the two class lists, CUB's own image split is used (CUB_200_2011/images.txt and
train_test_split.txt). Training draws one of an image's captions per visit; evaluations prompt with the
first. Images are centre-cropped (not cropped to the bird's box) and resized to `data.image_size`.

  python -m tcts_jax.data.cub --folder=CUB_ROOT --image_size=256 [--data_dir=...]   # build it once
"""

import pathlib

from tcts_jax.data.image_folder import ImageFolder, build

IMAGES = 'CUB_200_2011/images'


def _lines(path: pathlib.Path) -> list:
  return [l.strip() for l in path.read_text(encoding='utf-8').splitlines() if l.strip()]


def text_dir(root: pathlib.Path) -> pathlib.Path:
  for name in ('text_c10', 'text'):
    if (root / name).is_dir():
      return root / name
  raise FileNotFoundError(f'no captions in {root}: expected text_c10/ (Reed et al.) or text/')


def image_splits(root: pathlib.Path) -> dict:
  """{'<class>/<name>.jpg': 'train' | 'test'}: Reed's class split if its class lists are there, else CUB's."""
  if (root / 'trainvalclasses.txt').is_file() and (root / 'testclasses.txt').is_file():
    split_of = {c: 'train' for c in _lines(root / 'trainvalclasses.txt')}
    split_of.update({c: 'test' for c in _lines(root / 'testclasses.txt')})
    images = sorted(p.relative_to(root / IMAGES).as_posix() for p in (root / IMAGES).glob('*/*.jpg'))
    return {i: split_of[i.split('/')[0]] for i in images if i.split('/')[0] in split_of}
  listing, split = root / 'CUB_200_2011' / 'images.txt', root / 'CUB_200_2011' / 'train_test_split.txt'
  if not listing.is_file() or not split.is_file():
    raise FileNotFoundError(
      f'no split in {root}: expected trainvalclasses.txt and testclasses.txt, or CUB_200_2011/images.txt and '
      'train_test_split.txt'
    )
  paths = dict(l.split(maxsplit=1) for l in _lines(listing))
  return {paths[i]: 'train' if flag == '1' else 'test' for i, flag in (l.split() for l in _lines(split))}


def read_records(folder, layout: str = 'cub', split_file: str = '') -> list:
  del layout, split_file
  root = pathlib.Path(folder)
  if not (root / IMAGES).is_dir():
    raise FileNotFoundError(f'CUB images not found: {root / IMAGES}')
  texts = text_dir(root)
  records = []
  for image, split in sorted(image_splits(root).items()):
    caption_file = (texts / image).with_suffix('.txt')
    if not caption_file.is_file():
      raise FileNotFoundError(f'no captions for {image}: {caption_file}')
    captions = [' '.join(l.split()) for l in _lines(caption_file)]
    if not captions:
      raise ValueError(f'{caption_file} holds no caption')
    if not (root / IMAGES / image).is_file():
      raise FileNotFoundError(f'CUB image not found: {root / IMAGES / image}')
    records.append({'file_name': f'{IMAGES}/{image}', 'captions': captions, 'split': split})
  if not records:
    raise ValueError(f'no CUB images in {root / IMAGES}')
  return records


class Cub(ImageFolder):
  name = 'cub'
  layout = 'cub'
  needs = 'the root holding CUB_200_2011/images and text_c10'


def get_dataset(data_config) -> Cub:
  return Cub(data_config.get('folder'), data_config.image_size, 0.0, data_config.data_dir)


if __name__ == '__main__':
  from absl import flags

  from tcts_jax.data.tfds_builder import run_build_command

  flags.DEFINE_string('folder', None, 'The root holding CUB_200_2011/ and text_c10/.', required=True)
  flags.DEFINE_integer('image_size', 256, 'Side of the square images stored.', lower_bound=1)
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: ~/tensorflow_datasets).')
  F = flags.FLAGS
  run_build_command(lambda: build(F.folder, F.image_size, 0.0, F.data_dir, 'cub'))
