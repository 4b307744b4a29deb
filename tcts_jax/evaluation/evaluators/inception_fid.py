"""FID in the pool3 features of the FID Inception-V3 (models/inception.py), against the held-out images.

Reads `config.eval.inception_weights`: a local .npz or .safetensors file converted once from pytorch-fid's
`pt_inception-2015-12-05` weights (see models/inception.py); nothing is downloaded. `eval.inception_resize`
is the input size (299, as pytorch-fid). FID is biased in N: compare only at equal N.
"""

import numpy as np

from tcts_jax.evaluation.evaluators import Column, Evaluator as Base, Unavailable
from tcts_jax.metrics.fid import fid_from_features
from tcts_jax.utils.config import resolve_path

FEATURE_DIM = 2048


class Evaluator(Base):
  name = 'inception_fid'
  columns = (Column('inception_fid', 'FID (Inception)', 1.0, 2),)
  description = 'FID (Inception): pool3 features of the FID Inception-V3 at 299 px, against the held-out images.'

  def __init__(self, ctx, batch_size: int = 50):
    super().__init__(ctx)
    from tcts_jax.models import inception  # pylint: disable=import-outside-toplevel (large module)

    setting = ctx.config.eval.get('inception_weights')
    if not setting:
      raise Unavailable(
        'eval.inception_weights is not set (a local pt_inception-2015-12-05 .npz/.safetensors; '
        'see tcts_jax/models/inception.py)'
      )
    path = resolve_path(setting)
    if not path.is_file():
      raise Unavailable(f'no Inception weights file at {path}')
    self.inception, self.batch_size = inception, batch_size
    self.params = inception.load_inception(str(path))
    self.resize = int(ctx.config.eval.get('inception_resize', 299))
    self.real = self.features(ctx.held_out.images)

  def features(self, images) -> np.ndarray:
    """(N, 2048) float64, in fixed-size batches (one compilation)."""
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start : start + self.batch_size]
      pad = np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:], chunk.dtype)
      feats = self.inception.inception_features(self.params, np.concatenate([chunk, pad]), self.resize)
      out.append(np.asarray(feats, np.float64)[: len(chunk)])
    return np.concatenate(out)

  def per_row(self, images, example) -> dict:
    del example
    if min(len(images), len(self.real)) < 2:
      raise ValueError('FID (Inception) needs at least 2 images per set')
    return {'inception_fid': fid_from_features(self.features(images), self.real)}
