"""Captioned shapes as a registry entry (`config.data.name = 'captioned_shapes'`).

The procedural benchmark (`shapes.py`, stored by the TFDS builder `shapes_tfds.py`) knows the truth of
every caption, so it brings what no other dataset has: the exact compositional alignment checker
(`shapes_alignment.py`) as the 'alignment' evaluator, and re-rendered scenes (an ideal generator's images).
"""

import dataclasses
import functools

import numpy as np

from tcts_jax.data import Dataset, HeldOut, shapes, shapes_alignment, shapes_tfds
from tcts_jax.evaluation.evaluators import Column, Evaluator, transition_counts
from tcts_jax.models import features

# Per-image alignment values; object-level ones are pooled over objects (SOA-I), the others averaged over
# images (GenEval), exactly as shapes_alignment.score_batch does.
OBJECT_LEVEL = ('object_accuracy', 'shape_accuracy', 'color_accuracy', 'size_accuracy', 'position_accuracy')
IMAGE_LEVEL = ('all_correct', 'count_correct', 'num_detected')
SCORE_KEYS = OBJECT_LEVEL + IMAGE_LEVEL + ('num_objects',)


class CaptionedShapes(Dataset):
  name = 'captioned_shapes'
  fields = ('objects', 'num_objects')
  evaluators = {'alignment': f'{__name__}.AlignmentEvaluator'}

  def __init__(self, config_name: str = 'default', data_dir=None, image_size: int = 32):
    self.config_name, self.data_dir, self.image_size = config_name, data_dir, image_size

  @property
  def benchmark(self) -> str:
    return f'{self.name}/{self.config_name}'

  @functools.cache
  def builder(self):
    return shapes_tfds.build(self.config_name, self.data_dir)

  def vocabulary(self) -> list:
    return shapes.vocabulary()

  feature_heads = features.SHAPES_HEADS

  def feature_targets(self, batch: dict) -> dict:
    return {'cell': features.cell_targets(batch['objects'], batch['num_objects'])}

  def reference_images(self, held_out: HeldOut, example, seed: int) -> np.ndarray:
    """Each record's scene drawn again with fresh nuisances (background, jitter): image i for record
    `example[i]`. Independent of the held-out images, so FID against them is the floor at this N."""
    f = held_out.fields
    return np.stack(
      [rerender(f['objects'][e], f['num_objects'][e], seed, i, self.image_size) for i, e in enumerate(example)]
    )


def rerender(objects, num_objects, seed: int, index: int, image_size: int) -> np.ndarray:
  """The scene of a caption drawn again with fresh nuisances (background, jitter)."""
  rng = np.random.default_rng([seed, index, 0x5EED])
  fresh = shapes.sample_scene(rng)
  n = int(num_objects)
  scene = dataclasses.replace(
    fresh,
    objects=shapes.scene_from_objects(objects, n),
    jitter=tuple((int(dy), int(dx)) for dy, dx in rng.integers(-1, 2, size=(n, 2))),
  )
  return shapes.render(scene, image_size)


def get_dataset(data_config) -> CaptionedShapes:
  return CaptionedShapes(data_config.config_name, data_config.data_dir, data_config.image_size)


def pooled_alignment(values: dict, idx=None) -> dict:
  """Row means as score_batch reports them, over images `idx` ((R, n) resamples, or all when None)."""
  idx = np.arange(len(values['num_objects'])) if idx is None else idx
  w = values['num_objects'][idx]
  out = {k: (values[k][idx] * w).sum(-1) / np.maximum(w.sum(-1), 1.0) for k in OBJECT_LEVEL}
  out.update({k: values[k][idx].mean(-1) for k in IMAGE_LEVEL})
  return out


class AlignmentEvaluator(Evaluator):
  """Exact compositional alignment: every object read back from the pixels against the caption's truth."""

  name = 'alignment'
  columns = (
    Column('object_accuracy', 'object acc.', 100, 1, True),
    Column('all_correct', 'all correct', 100, 1, True),
    Column('count_correct', 'count', 100, 1),
    Column('shape_accuracy', 'shape', 100, 1),
    Column('color_accuracy', 'colour', 100, 1),
    Column('size_accuracy', 'size', 100, 1),
    Column('position_accuracy', 'position', 100, 1),
  )
  compared = ('object_accuracy', 'all_correct')
  description = (
    'Alignment: exact compositional checker (tcts_jax/data/shapes_alignment.py), in %; object-level '
    'columns pooled over objects, all correct / count over images.'
  )

  def __init__(self, ctx):
    super().__init__(ctx)
    self._last = (None, None)  # (images, their detections): `transitions` reads the images `per_image` just read

  def _detect(self, images) -> list:
    if self._last[0] is not images:
      self._last = (images, [shapes_alignment.detect_objects(im) for im in images])
    return self._last[1]

  def per_image(self, images, example) -> dict:
    f = self.ctx.held_out.fields
    objects, counts = f['objects'][example], f['num_objects'][example]
    per_image = shapes_alignment.score_batch(images, objects, counts, self._detect(images))['per_image']
    return {k: np.asarray(per_image[k], np.float64) for k in SCORE_KEYS}

  def pool(self, values: dict, idx) -> dict:
    return pooled_alignment(values, idx)

  def transitions(self, mid_images, images, example) -> dict:
    """Per image, the caption's objects wrong in the midpoint prediction and of those the ones right in the
    final image, and the same for the objects right at midpoint; right = exactly matched (`score_detections`'
    per-object 'matched')."""
    f = self.ctx.held_out.fields
    objects, counts = f['objects'][example], f['num_objects'][example]

    def matched(detections):
      return [
        shapes_alignment.score_detections(d, o, k)['per_object']['matched']
        for d, o, k in zip(detections, objects, counts)
      ]

    mid = matched([shapes_alignment.detect_objects(im) for im in mid_images])
    end = matched(self._detect(images))
    self._last = (None, None)
    return transition_counts(mid, end)
