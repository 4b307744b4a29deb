"""FID-shapes: the Fréchet distance in the features of our captioned-shapes CNN (NOT Inception FID).

Reads `config.eval.features_weights`: a dir with features.safetensors or a `features` trainer workdir.
Compared against the held-out images; comparable only with FID-shapes at the same N and feature weights.
"""

from tcts_jax.evaluation.evaluators import Column, Evaluator as Base, Unavailable
from tcts_jax.metrics.fid_shapes import NAME, FIDShapes, fid_shapes_from_features
from tcts_jax.utils.config import resolve_path


class Evaluator(Base):
  name = 'fid_shapes'
  columns = (Column('fid_shapes', NAME, 1.0, 2),)
  description = (
    f'{NAME} is NOT Inception FID: it uses our captioned-shapes feature network and is comparable only at equal N.'
  )

  def __init__(self, ctx):
    super().__init__(ctx)
    setting = ctx.config.eval.get('features_weights')
    source = resolve_path(setting) if setting else None
    if source is None or not ((source / 'features.safetensors').is_file() or (source / 'checkpoints').is_dir()):
      where = 'eval.features_weights is not set' if source is None else f'no features weights in {source}'
      raise Unavailable(
        f'{where} (train them: python -m tcts_jax.train --config=configs/shapes.py:features --workdir=...)'
      )
    self.fid = FIDShapes.load(source, ctx.config)
    n, dim = len(ctx.held_out), self.fid.feature_dim
    if n <= dim:  # a singular covariance: refuse rather than report a meaningless number
      raise ValueError(
        f'{NAME} needs more images than its {dim} feature dimensions, got {n} held-out records; '
        'raise eval.num_images or set eval.features_weights=None'
      )
    self.real = self.fid.features(ctx.held_out.images)

  def per_row(self, images, example) -> dict:
    del example
    return {'fid_shapes': fid_shapes_from_features(self.fid.features(images), self.real)}
