"""High resolution (docs/design.md §16): windows cover the canvas and end at its edge; per position the merged
prediction is the mean over the windows covering it; a canvas of the model's own grid is the model, bit for bit;
the codebook resize is the identity at the same size; and the API and CLI sample and refine larger canvases."""

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from tcts_jax import editing
from tcts_jax.api import TextToImage
from tcts_jax.sampling.model import MaskedGenerator
from tcts_jax.sampling.sampler import Sampler, sampler_config
from tcts_jax.sampling.windows import window_indices, window_starts, windowed_generator
from tcts_jax.utils.config import load_config
from tests.conftest import run_cli


@pytest.fixture(scope='module')
def t2i(tiny_weights):
  return TextToImage.load(load_config('configs/shapes.py:sample,tiny'), str(tiny_weights))


def test_windows_cover_the_canvas_and_end_at_its_edge():
  assert window_starts(16, 8, 4) == [0, 4, 8]
  assert window_starts(12, 8, 3) == [0, 3, 4]  # the last window ends at the edge
  assert window_starts(8, 8, 4) == [0]
  indices = window_indices(12, 8, 3)
  assert indices.shape == (9, 64)
  np.testing.assert_array_equal(indices[0].reshape(8, 8)[0], np.arange(8))  # row-major inside the window
  np.testing.assert_array_equal(indices[1].reshape(8, 8)[1, :2], [12 + 3, 12 + 4])
  assert set(indices.ravel()) == set(range(144))
  tiles = window_indices(16, 8, 8)
  np.testing.assert_array_equal(np.bincount(tiles.ravel()), np.ones(256))  # stride = window: disjoint tiles
  for bad in [dict(grid=4, window=8, stride=4), dict(grid=16, window=8, stride=0), dict(grid=16, window=8, stride=9)]:
    with pytest.raises(ValueError):
      window_starts(**bad)


def _position_model(window: int) -> MaskedGenerator:
  """A toy model whose logit for code 0 at each position is that position's index inside its window, and for code
  1 the token it reads there."""

  def logits(params, tokens, text_state, attention_layer):
    local = jnp.broadcast_to(jnp.arange(window * window, dtype=jnp.float32), tokens.shape)
    return jnp.stack([local, tokens.astype(jnp.float32)], axis=-1), None

  return MaskedGenerator(
    num_tokens=window * window,
    codebook_size=2,
    mask_id=2,
    num_layers=1,
    encode_text=lambda params, ids, negative: jnp.concatenate([ids, ids]),
    logits=logits,
  )


def test_the_merged_prediction_is_the_mean_over_the_covering_windows():
  grid, window, stride = 12, 4, 3
  model = windowed_generator(_position_model(window), grid, stride)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 2, (2, grid * grid)), jnp.int32)
  merged, maps = model.logits(None, tokens, jnp.zeros((2, 1)), None)
  assert maps is None and merged.shape == (2, grid * grid, 2)
  # By hand: every window's local index of every canvas position it covers, averaged per position.
  total, count = np.zeros(grid * grid), np.zeros(grid * grid)
  for r in window_starts(grid, window, stride):
    for c in window_starts(grid, window, stride):
      for i in range(window):
        for j in range(window):
          total[(r + i) * grid + c + j] += i * window + j
          count[(r + i) * grid + c + j] += 1
  np.testing.assert_allclose(merged[0, :, 0], total / count, rtol=1e-6)
  np.testing.assert_array_equal(merged[..., 1], tokens)  # every window reads the same token at a position
  with pytest.raises(ValueError, match='no attention maps'):
    model.logits(None, tokens, jnp.zeros((2, 1)), 1)


def test_a_canvas_of_the_model_grid_is_the_model_bit_for_bit(tiny_model):
  config, models, params = tiny_model
  model = models.masked_generator()
  same = windowed_generator(model, models.grid_size, 4, model.decode)
  cfg = sampler_config(config.sampler, strategy='random_revoke', steps=6)
  text = jnp.asarray(models.text_tokenizer.encode_batch(['a red circle', 'a blue square']))
  a = Sampler(model, cfg)(params, text, jax.random.key(1))
  b = Sampler(same, cfg)(params, text, jax.random.key(1))
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.images, b.images)


def test_the_codebook_resize_is_the_identity_at_the_same_size_and_keeps_flat_regions(t2i):
  g = t2i.grid_size
  tokens = np.random.default_rng(0).integers(0, t2i.model.codebook_size, (3, g * g)).astype(np.int32)
  tokens[1] = np.where(np.arange(g * g) % g < g // 2, 3, 7)  # code 3 on the left half, 7 on the right
  tokens[2] = 5  # one code everywhere
  np.testing.assert_array_equal(t2i.upsample_tokens(tokens, g), tokens)
  big = t2i.upsample_tokens(tokens, 2 * g).reshape(3, 2 * g, 2 * g)
  assert np.all(big[2] == 5)
  # Bilinear interpolation blends the two codes only in the two columns at the seam.
  assert np.all(big[1][:, : g - 1] == 3) and np.all(big[1][:, g + 1 :] == 7)
  with pytest.raises(ValueError, match='smaller than the model grid'):
    t2i.upsample_tokens(tokens, g - 1)


def test_the_api_samples_and_refines_a_larger_canvas(t2i):
  g, size = t2i.grid_size, t2i.image_size
  canvas = t2i.at_grid(2 * g)
  assert canvas.stride == g // 2 and canvas.image_size == 2 * size
  gen = canvas.generate(['a red circle', 'a blue square'], seed=0, strategy='random_revoke', steps=8)
  assert gen.images.shape == (2, 2 * size, 2 * size, 3) and gen.tokens.shape == (2, 4 * g * g)
  assert np.all(gen.tokens < t2i.model.codebook_size)
  np.testing.assert_array_equal(canvas.decode_tokens(gen.tokens), gen.images)
  with pytest.raises(ValueError, match='no attention maps'):
    canvas.generate(['a red circle'], strategy='fas', steps=8)

  small = t2i.generate(['a red circle'], seed=0, steps=4).tokens
  out = editing.refine_upsampled(t2i, small, 'a red circle', 2 * g, jax.random.key(0), chooser='random', steps=4)
  start = t2i.upsample_tokens(small, 2 * g)
  assert out.tokens.shape == (1, 4 * g * g) and out.images.shape == (1, 2 * size, 2 * size, 3)
  assert out.remasked.sum() == round(0.6 * 4 * g * g)
  np.testing.assert_array_equal(out.tokens[~out.remasked], start[~out.remasked])  # the rest is locked


def test_the_sample_cli_writes_the_larger_canvas(tiny_weights, tmp_path):
  for mode in ('windows', 'upsample'):
    out = tmp_path / f'{mode}.png'
    r = run_cli(
      'tcts_jax.sample',
      '--config=configs/shapes.py:sample,tiny',
      f'--weights={tiny_weights}',
      '--prompt=a red circle',
      '--num_samples=1',
      '--grid=16',
      f'--high_res={mode}',
      '--config.sampler.strategy=uniform',
      '--config.sampler.steps=4',
      f'--out={out}',
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert PIL.Image.open(out).size[0] >= 64  # one 64 px image (and its caption)
