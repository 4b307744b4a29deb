"""Shape scenes as a registry entry (`config.data.name = 'shape_scenes'`): the captioned-shapes variant in
the paper's regime (docs/design.md §11; the scenes in `scenes.py`, stored by `scenes_tfds.py`).

Like captioned shapes it knows the truth of every caption, so it brings its exact checker
(`scenes_alignment.py`) as the 'alignment' evaluator and re-rendered scenes as an ideal generator's images.
"""

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from tcts_jax.data import Dataset, HeldOut, scenes, scenes_alignment, scenes_tfds, shapes
from tcts_jax.evaluation.evaluators import Column, Evaluator, transition_counts

NUM_CELLS = len(shapes.POSITIONS)
# Per cell: 0 = empty, else 1 + ((shape * colours + colour) * sizes + size) * fills + fill.
NUM_CELL_CLASSES = 1 + len(shapes.SHAPES) * len(shapes.COLOR_NAMES) * len(shapes.SIZES) * len(scenes.FILLS)


class ShapeScenes(Dataset):
  name = 'shape_scenes'
  fields = ('objects', 'num_objects', 'texture')
  evaluators = {'alignment': f'{__name__}.AlignmentEvaluator'}

  def __init__(self, config_name: str = 'default', data_dir=None, image_size: int = 48):
    self.config_name, self.data_dir, self.image_size = config_name, data_dir, image_size

  @property
  def benchmark(self) -> str:
    return f'{self.name}/{self.config_name}'

  @functools.cache
  def builder(self):
    return scenes_tfds.build(self.config_name, self.data_dir)

  def vocabulary(self) -> list:
    return scenes.vocabulary()

  # The FID-shapes network learns each cell's object (with its fill) and the background's texture.
  feature_heads = (('cell', NUM_CELLS, NUM_CELL_CLASSES), ('texture', 1, len(scenes.TEXTURES)))

  def feature_targets(self, batch: dict) -> dict:
    return {'cell': cell_targets(batch['objects'], batch['num_objects']), 'texture': batch['texture'].reshape(-1, 1)}

  def reference_images(self, held_out: HeldOut, example, seed: int) -> np.ndarray:
    """Each record's scene drawn again with fresh nuisances (background colours, texture phase and
    direction, jitter): the same objects in the same cells on the same kind of background."""
    f = held_out.fields
    return np.stack(
      [
        rerender(f['objects'][e], f['num_objects'][e], f['texture'][e], seed, i, self.image_size)
        for i, e in enumerate(example)
      ]
    )


def cell_targets(objects, num_objects):
  """(B, 9) int32 class per cell (see NUM_CELL_CLASSES) from ground-truth rows (B, MAX_OBJECTS, COLUMNS)."""
  objects = jnp.asarray(objects)
  col = {name: i for i, name in enumerate(scenes.COLUMNS)}
  valid = jnp.arange(objects.shape[1])[None] < jnp.asarray(num_objects).reshape(-1, 1)
  kind = objects[..., col['shape']] * len(shapes.COLOR_NAMES) + objects[..., col['color']]
  cls = 1 + (kind * len(shapes.SIZES) + objects[..., col['size']]) * len(scenes.FILLS) + objects[..., col['fill']]
  # Objects sit in distinct cells, so summing one-hot placements never mixes two classes.
  placed = jnp.where(valid[..., None], jnp.arange(NUM_CELLS) == objects[..., col['cell'], None], False)
  return jnp.sum(placed * cls[..., None], axis=1).astype(jnp.int32)


def rerender(objects, num_objects, texture, seed: int, index: int, image_size: int) -> np.ndarray:
  rng = np.random.default_rng([seed, index, 0x5EED])
  fresh = scenes.sample_scene(rng)
  n = int(num_objects)
  scene = dataclasses.replace(
    fresh,
    objects=scenes.decode_objects(objects, n),
    jitter=tuple((int(dy), int(dx)) for dy, dx in rng.integers(-1, 2, size=(n, 2))),
    texture=scenes.TEXTURES[int(texture)],
  )
  return scenes.render(scene, image_size)


def get_dataset(data_config) -> ShapeScenes:
  return ShapeScenes(data_config.config_name, data_config.data_dir, data_config.image_size)


class AlignmentEvaluator(Evaluator):
  """Exact compositional alignment of shape scenes (scenes_alignment.py): objects, relations, background."""

  name = 'alignment'
  columns = (
    Column('object_accuracy', 'object acc.', 100, 1, True),
    Column('all_correct', 'all correct', 100, 1, True),
    Column('count_correct', 'count', 100, 1),
    Column('binding_accuracy', 'binding', 100, 1),
    Column('fill_accuracy', 'fill', 100, 1),
    Column('position_accuracy', 'position', 100, 1),
    Column('relation_accuracy', 'relation', 100, 1),
    Column('texture_accuracy', 'background', 100, 1),
    Column('duplicates', 'duplicates', 1, 2),
  )
  compared = ('object_accuracy', 'all_correct', 'texture_accuracy')
  description = (
    'Alignment: exact checker of shape scenes (tcts_jax/data/scenes_alignment.py), in %; object-level columns '
    'pooled over the objects they apply to, all correct / count / background over images, duplicates = extra '
    'copies of described objects per image.'
  )

  def __init__(self, ctx):
    super().__init__(ctx)
    self._last = (None, None)  # (images, their analyses): `transitions` reads the images `per_image` just read

  def _analyse(self, images) -> list:
    if self._last[0] is not images:
      self._last = (images, [scenes_alignment.analyse(im) for im in images])
    return self._last[1]

  def _truth(self, example):
    f = self.ctx.held_out.fields
    return f['objects'][example], f['num_objects'][example], f['texture'][example]

  def per_image(self, images, example) -> dict:
    return scenes_alignment.score_batch(images, *self._truth(example), self._analyse(images))['per_image']

  def pool(self, values: dict, idx) -> dict:
    return scenes_alignment.pool(values, idx)

  def transitions(self, mid_images, images, example) -> dict:
    """Per image, the caption's objects wrong in the midpoint prediction and of those the ones right in the
    final image, and the same for the objects right at midpoint (right = `score_detections`' 'matched')."""
    truth = self._truth(example)
    mid = scenes_alignment.score_batch(mid_images, *truth)['matched']
    end = scenes_alignment.score_batch(images, *truth, self._analyse(images))['matched']
    self._last = (None, None)
    return transition_counts(mid, end)
