"""TFDS builder `captioned_shapes`: the procedural dataset of `shapes.py`, no download.

Stored as ARRAY_RECORD so `builder.as_data_source` gives random access. Neither generating
(images are PNG-encoded by PIL) nor reading imports TensorFlow. Records keep generation order:
record i of a split is `builder.make_example(builder.split_seed(split), i)` (`shapes.make_example`).

  python -m tcts_jax.data.shapes_tfds --config=default [--data_dir=...]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import PIL.Image
import tensorflow_datasets as tfds

from tcts_jax.data import shapes
from tcts_jax.data.tfds_builder import ArrayRecordBuilder, prepare, run_build_command

# Separate seed streams per split, so 'test' and 'validation' are held out from 'train' and from each other.
_SPLIT_SEED_OFFSET = {'train': 0, 'test': 1_000_003, 'validation': 2_000_003}


@dataclasses.dataclass
class CaptionedShapesConfig(tfds.core.BuilderConfig):
  image_size: int = 32
  num_train: int = 50_000
  num_test: int = 2_000
  num_validation: int = 2_000  # captions for choosing settings, disjoint from the test captions tables report
  seed: int = 0


class CaptionedShapes(ArrayRecordBuilder):
  """Captioned shapes: 1-3 coloured shapes on a smooth muted background, with captions."""

  BUILDER_CONFIGS = [
    CaptionedShapesConfig(name='default', description='32x32, 50k train, 2k test, 2k validation.'),
    CaptionedShapesConfig(
      name='tiny',
      description='32x32, 512 train, 128 test, 128 validation (for tests).',
      num_train=512,
      num_test=128,
      num_validation=128,
    ),
    # The same scenes and captions at twice the pixels (Muse's super-resolution stage, docs/design.md §17).
    CaptionedShapesConfig(name='default_x2', description='64x64: the default scenes at 2x.', image_size=64),
    CaptionedShapesConfig(
      name='tiny_x2',
      description='64x64: the tiny scenes at 2x (for tests).',
      image_size=64,
      num_train=512,
      num_test=128,
      num_validation=128,
    ),
  ]
  DEFAULT_CONFIG_NAME = 'default'
  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.', '1.1.0': "A 'validation' split; train and test unchanged."}

  def _info(self) -> tfds.core.DatasetInfo:
    # Built directly: there are no TFDS metadata files (README, citations) beside this module.
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(s, s, 3)),
          'caption': tfds.features.Text(),
          'objects': tfds.features.Tensor(shape=(shapes.MAX_OBJECTS, 4), dtype=np.int32),
          'num_objects': tfds.features.Scalar(dtype=np.int32),
        }
      ),
      # Keep generation order, so record i of a split is `make_example(split_seed, i)`.
      disable_shuffling=True,
    )

  def split_seed(self, split: str) -> int:
    return self.builder_config.seed + _SPLIT_SEED_OFFSET[split]

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {
      'train': self._generate_examples(self.split_seed('train'), cfg.num_train),
      'test': self._generate_examples(self.split_seed('test'), cfg.num_test),
      'validation': self._generate_examples(self.split_seed('validation'), cfg.num_validation),
    }

  def make_example(self, seed: int, index: int) -> dict:
    return shapes.make_example(seed, index, self.builder_config.image_size)

  def _generate_examples(self, seed: int, num_examples: int):
    for index in range(num_examples):
      example = self.make_example(seed, index)
      # A PIL image is PNG-encoded by PIL; a numpy one would go through a TF graph (slow start).
      example['image'] = PIL.Image.fromarray(example['image'])
      yield index, example


def build(config_name: str = 'default', data_dir: str | None = None) -> CaptionedShapes:
  """Returns the prepared builder (generating the data only the first time)."""
  return prepare(CaptionedShapes, config_name, data_dir)


if __name__ == '__main__':
  from absl import flags

  flags.DEFINE_string('config', 'default', 'TFDS config: default, tiny (for tests), default_x2 or tiny_x2 (64 px).')
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: ~/tensorflow_datasets).')
  run_build_command(lambda: build(flags.FLAGS.config, flags.FLAGS.data_dir))
