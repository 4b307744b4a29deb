"""FID-shapes (NOT Inception FID): the Fréchet distance in the features of our captioned-shapes CNN.

Inception weights cannot be downloaded here, so on the embedded benchmark FID is measured in the
`feature_dim` penultimate activations of `models.features.ShapesFeatureNet`, trained by our own trainer
(`configs/shapes.py:features`). Numbers are comparable only with other FID-shapes numbers from the same
feature weights at the same sample count N: FID is biased in N (fewer samples, larger FID).

  fid = FIDShapes.load('weights/shapes')          # features.safetensors, or a features workdir
  fid(generated_uint8, real_uint8)                # float
  fid.features(images)                            # (N, feature_dim) float32

Covariances need more samples than feature dimensions (N > feature_dim, 64 by default): with fewer the
covariance is singular and the estimate meaningless, so `fid_shapes` raises instead of returning a number.
"""

from typing import Optional

import jax
import numpy as np

from tcts_jax.utils import checkpoint
from tcts_jax.metrics.fid import fid_from_features
from tcts_jax.models.features import ShapesFeatureNet, abstract_feature_params, build_feature_net

NAME = 'FID-shapes'  # how results label it: never plain "FID"


def check_sample_count(n: int, feature_dim: int, name: str = 'images') -> None:
  """Raise a clear ValueError when n samples cannot give a full-rank feature covariance."""
  if n <= feature_dim:
    raise ValueError(f'{NAME} needs more {name} than feature dimensions ({feature_dim}), got {n}')


class FIDShapes:
  """A loaded feature network: `features(images)` and `__call__(images_a, images_b)` -> FID-shapes."""

  def __init__(self, net: ShapesFeatureNet, params, batch_size: int = 256):
    self.net, self.params, self.batch_size = net, jax.device_put(params), batch_size
    self._apply = jax.jit(lambda p, x: net.apply({'params': p}, x)['features'])

  @classmethod
  def load(cls, source, config=None) -> 'FIDShapes':
    """Weights from a dir with features.safetensors or a `features` trainer workdir; the architecture from
    `config` (default: configs/shapes.py) — a mismatch fails with one clear line."""
    if config is None:
      from tcts_jax.utils.config import load_config  # pylint: disable=import-outside-toplevel

      config = load_config('configs/shapes.py:features')
    net = build_feature_net(config)
    expected = abstract_feature_params(net, config.data.image_size)
    return cls(net, checkpoint.load_part(source, 'features', expected))

  @property
  def feature_dim(self) -> int:
    return self.net.feature_dim

  def features(self, images) -> np.ndarray:
    """uint8 (N, S, S, 3) -> (N, feature_dim) float32, in fixed-size batches (one compilation)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
      raise ValueError(f'{NAME} expects uint8 (N, S, S, 3) images, got {images.dtype} {images.shape}')
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start : start + self.batch_size]
      padded = np.concatenate([chunk, np.zeros((self.batch_size - len(chunk),) + chunk.shape[1:], np.uint8)])
      out.append(np.asarray(self._apply(self.params, padded))[: len(chunk)])
    return np.concatenate(out) if out else np.zeros((0, self.feature_dim), np.float32)

  def __call__(self, images_a, images_b) -> float:
    return fid_shapes_from_features(self.features(images_a), self.features(images_b))


def fid_shapes_from_features(features_a, features_b) -> float:
  """FID-shapes of two feature sets (N, D), (M, D); raises when N or M <= D."""
  for f in (features_a, features_b):
    check_sample_count(len(f), np.shape(f)[-1])
  return fid_from_features(features_a, features_b)


def fid_shapes(params, images_a, images_b, net: Optional[ShapesFeatureNet] = None) -> float:
  """FID-shapes of two uint8 image sets with feature-network `params` (architecture `net`, default the
  default config's)."""
  return FIDShapes(net or ShapesFeatureNet(), params)(images_a, images_b)
