"""TFDS builder `shape_scenes`: the procedural scenes of `scenes.py`, no download (as `shapes_tfds.py`).

python -m tcts_jax.data.scenes_tfds --config=default [--data_dir=...]
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from tcts_jax.data import scenes, shapes_tfds
from tcts_jax.data.tfds_builder import prepare, run_build_command


@dataclasses.dataclass
class ShapeScenesConfig(shapes_tfds.CaptionedShapesConfig):
  image_size: int = 48


class ShapeScenes(shapes_tfds.CaptionedShapes):
  """Shape scenes: 3-6 solid or hollow shapes, placed by cell, by relation or freely, on textured backgrounds."""

  BUILDER_CONFIGS = [
    ShapeScenesConfig(name='default', description='48x48, 50k train, 2k test, 2k validation.'),
    ShapeScenesConfig(
      name='tiny',
      description='48x48, 512 train, 128 test, 128 validation (for tests).',
      num_train=512,
      num_test=128,
      num_validation=128,
    ),
  ]
  DEFAULT_CONFIG_NAME = 'default'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return tfds.core.DatasetInfo(
      builder=self,
      description=__doc__,
      features=tfds.features.FeaturesDict(
        {
          'image': tfds.features.Image(shape=(s, s, 3)),
          'caption': tfds.features.Text(),
          'objects': tfds.features.Tensor(shape=(scenes.MAX_OBJECTS, len(scenes.COLUMNS)), dtype=np.int32),
          'num_objects': tfds.features.Scalar(dtype=np.int32),
          'texture': tfds.features.Scalar(dtype=np.int32),
        }
      ),
      disable_shuffling=True,
    )

  def make_example(self, seed: int, index: int) -> dict:
    return scenes.make_example(seed, index, self.builder_config.image_size)


def build(config_name: str = 'default', data_dir: str | None = None) -> ShapeScenes:
  """Returns the prepared builder (generating the data only the first time)."""
  return prepare(ShapeScenes, config_name, data_dir)


if __name__ == '__main__':
  from absl import flags

  flags.DEFINE_string('config', 'default', 'TFDS config: default or tiny (for tests).')
  flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: ~/tensorflow_datasets).')
  run_build_command(lambda: build(flags.FLAGS.config, flags.FLAGS.data_dir))
