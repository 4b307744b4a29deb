"""The FID-shapes feature network: a small CNN trained on captioned shapes (NOT Inception).

Inception weights cannot be downloaded here, so FID on the embedded benchmark is measured in the feature
space of this network instead ("FID-shapes"; `tcts_jax.metrics.fid_shapes`). It is trained with our own
trainer (the `features` stage) on two supervised tasks that together cover what the images contain:
  - per cell of the 3x3 scene grid, one of 1 + shapes x colours x sizes classes (0 = empty cell);
  - the image average-pooled to 4x4 RGB (regression), so the features also encode the background
    (gradient and blotches), which a pure object classifier could learn to ignore; FAS claims are
    about backgrounds.
The features are the activations of the layer before the heads (`feature_dim`, default 64). The classification
heads come from the dataset (`Dataset.feature_heads`, targets from `Dataset.feature_targets`): captioned shapes
has one, 'cell'; shape scenes add the fill to each cell's class and a 'texture' head for the background.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from tcts_jax.data import shapes

NUM_CELLS = len(shapes.POSITIONS)
# 0 = empty; 1 + (shape * colours + colour) * sizes + size otherwise.
NUM_CELL_CLASSES = 1 + len(shapes.SHAPES) * len(shapes.COLOR_NAMES) * len(shapes.SIZES)
POOLED_SIDE = 4  # side of the average-pooled image the regression head predicts


def cell_targets(objects, num_objects):
  """(B, 9) int32 class per grid cell from ground-truth rows [shape, color, size, position] (B, 3, 4)."""
  objects = jnp.asarray(objects)
  valid = jnp.arange(objects.shape[1])[None] < jnp.asarray(num_objects).reshape(-1, 1)  # (B, 3)
  shape, color, size, cell = (objects[..., i] for i in range(4))
  cls = 1 + (shape * len(shapes.COLOR_NAMES) + color) * len(shapes.SIZES) + size
  # Objects sit in distinct cells, so summing one-hot placements never mixes two classes.
  placed = jnp.where(valid[..., None], jnp.arange(NUM_CELLS) == cell[..., None], False)  # (B, 3, 9)
  return jnp.sum(placed * cls[..., None], axis=1).astype(jnp.int32)


def pooled_targets(images_uint8):
  """(B, 4*4*3) average-pooled image in [-1, 1] (the background-aware regression target)."""
  x = jnp.asarray(images_uint8, jnp.float32) / 127.5 - 1.0
  b, s = x.shape[0], x.shape[1]
  k = s // POOLED_SIDE
  return x.reshape(b, POOLED_SIDE, k, POOLED_SIDE, k, 3).mean(axis=(2, 4)).reshape(b, -1)


# Captioned shapes' heads: name -> (positions, classes).
SHAPES_HEADS = (('cell', NUM_CELLS, NUM_CELL_CLASSES),)


class ShapesFeatureNet(nn.Module):
  """uint8 (B, S, S, 3) images -> dict(features (B, feature_dim), pooled (B, 48), and per head `name`
  '<name>_logits' (B, positions, classes)); with the default heads, cell_logits (B, 9, 37)."""

  channels: Sequence[int] = (16, 32, 64)
  feature_dim: int = 64
  heads: tuple = SHAPES_HEADS  # ((name, positions, classes), ...)

  @nn.compact
  def __call__(self, images_uint8):
    x = jnp.asarray(images_uint8, jnp.float32) / 127.5 - 1.0
    for i, ch in enumerate(self.channels):
      # Full resolution first, then halve per level: 32 -> 16 -> 8 keeps the 3x3 cell layout readable.
      x = nn.Conv(ch, (3, 3), strides=(1, 1) if i == 0 else (2, 2))(x)
      x = nn.swish(nn.GroupNorm(num_groups=min(8, ch))(x))
      x = nn.Conv(ch, (3, 3))(x)
      x = nn.swish(nn.GroupNorm(num_groups=min(8, ch))(x))
    # Flatten (not global pooling): which cell an object is in is part of what the features describe.
    h = nn.Dense(self.feature_dim, name='features')(x.reshape(x.shape[0], -1))
    features = nn.swish(nn.LayerNorm()(h))
    out = {'features': features}
    # Heads in order, 'cell' first: the shipped weights' parameter order and names (cell_head, pooled_head).
    for name, positions, classes in self.heads[:1]:
      out[f'{name}_logits'] = nn.Dense(positions * classes, name=f'{name}_head')(features).reshape(
        -1, positions, classes
      )
    out['pooled'] = nn.Dense(POOLED_SIDE * POOLED_SIDE * 3, name='pooled_head')(features)
    for name, positions, classes in self.heads[1:]:
      out[f'{name}_logits'] = nn.Dense(positions * classes, name=f'{name}_head')(features).reshape(
        -1, positions, classes
      )
    return out


def build_feature_net(config, heads=None) -> ShapesFeatureNet:
  """The feature network of a config's `features` section, with the heads of its dataset (or `heads`)."""
  if heads is None:
    from tcts_jax.data import get_dataset  # pylint: disable=import-outside-toplevel (data imports models)

    heads = get_dataset(config.data).feature_heads
  f = config.features
  return ShapesFeatureNet(channels=tuple(f.channels), feature_dim=f.feature_dim, heads=tuple(heads))


def abstract_feature_params(net: ShapesFeatureNet, image_size: int):
  """Shapes and dtypes of the feature network's params (what a checkpoint must match)."""
  x = jnp.zeros((1, image_size, image_size, 3), jnp.uint8)
  return jax.eval_shape(lambda: net.init(jax.random.key(0), x))['params']
