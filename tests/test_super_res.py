"""Muse's super-resolution stage (docs/design.md §17) on the tiny models: guidance drops the caption but never the
low-resolution tokens; the stage trains only its own transformer on codes = high-resolution then low-resolution
tokens of the same scenes; the two-stage API samples 64 px images from the base model's 32 px tokens."""

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
import pytest

from tcts_jax.api import SuperResolution, TextToImage
from tcts_jax.data import shapes, shapes_tfds
from tcts_jax.models.super_res import build_super_res, pack_conditioning
from tcts_jax.training.super_res import SuperResStage, downsample
from tcts_jax.training.trainer import train_and_evaluate
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import load_config
from tests.conftest import run_cli
from tests.test_train import tiny


def test_downsampling_averages_blocks():
  images = np.zeros((1, 4, 4, 3), np.uint8)
  images[0, :2, :2] = [10, 20, 30]
  images[0, 0, 0] = [14, 24, 34]
  np.testing.assert_array_equal(downsample(jnp.asarray(images))[0, 0, 0], [11, 21, 31])
  assert downsample(jnp.asarray(images)).shape == (1, 2, 2, 3)


@pytest.fixture(scope='module')
def trained(tiny_weights, tmp_path_factory):
  """A tiny 64 px tokenizer (`tokenizer,x2,tiny`) and super_res stage, 3 steps each, on the tiny base weights."""
  root = tmp_path_factory.mktemp('super_res')
  shapes_tfds.build('tiny_x2', data_dir=str(root / 'tfds'))
  tokenizer = tiny('tokenizer', root / 'tfds', variant=',x2', num_steps=3, image_every=0, checkpoint_every=3)
  train_and_evaluate(tokenizer, root / 'tokenizer')
  config = tiny('super_res', root / 'tfds', num_steps=3, log_every=1, image_every=3, checkpoint_every=3)
  with config.unlocked():
    config.tokenizer_checkpoint = str(root / 'tokenizer')
    config.super_res.base_weights = str(tiny_weights)
  state, history = train_and_evaluate(config, root / 'stage')
  return config, root, state, history


def test_the_stage_trains_its_transformer_alone_on_high_then_low_codes(trained):
  config, root, state, history = trained
  assert config.data.image_size == 64 and config.data.config_name == 'tiny_x2'
  assert set(state.params) == {'super_res'} and set(checkpoint.latest_params(root / 'stage')) == {'super_res'}
  assert all(np.isfinite(m['loss']) for _, m in history)
  stage = SuperResStage(config)
  assert stage.models.grid_size == 16 and stage.base_models.grid_size == 8
  assert stage.num_tokens == 256 + 64
  frozen = stage.frozen()
  images = shapes.make_example(0, 0, 64)['image']  # a 64 px scene
  codes = np.asarray(stage.encode_images(frozen, jnp.asarray(images)[None]))
  low = TextToImage.load(load_config('configs/shapes.py:sample,tiny'), config.super_res.base_weights).tokenize_images(
    np.asarray(downsample(jnp.asarray(images)[None]))
  )
  np.testing.assert_array_equal(codes[:, 256:], low)  # the base VQ's tokens of the half-size image


def test_guidance_drops_the_caption_but_keeps_the_low_resolution_tokens(trained):
  config, _, state, _ = trained
  stage = SuperResStage(config)
  params = {**stage.frozen(), **state.params}
  # A trained-for-3-steps model barely reads its context: perturb its weights so that every input matters.
  params['super_res'] = jax.tree.map(
    lambda p: p + 0.05 * jax.random.normal(jax.random.key(p.size), p.shape), params['super_res']
  )
  words = stage.models.text_tokenizer.encode_batch(['a red circle', 'a blue square'])
  rng = np.random.default_rng(0)
  low_a, low_b = (rng.integers(0, 64, (2, 64)) for _ in range(2))
  model = stage.models.masked_generator()
  tokens = jnp.full((2, 256), model.mask_id, jnp.int32)

  def logits(ids, low):
    state_ = model.encode_text(params, pack_conditioning(ids, low), None)
    out, _ = model.logits(params, jnp.concatenate([tokens, tokens]), state_, None)
    return np.asarray(out[:2]), np.asarray(out[2:])  # conditional, unconditional rows

  cond, uncond = logits(words, low_a)
  cond_words, uncond_words = logits(words[::-1], low_a)
  cond_low, uncond_low = logits(words, low_b)
  np.testing.assert_allclose(uncond_words, uncond, rtol=1e-5, atol=1e-5)  # the null text: the caption is gone
  assert np.abs(cond_words - cond).max() > 1e-3  # the conditional rows read it
  assert np.abs(uncond_low - uncond).max() > 1e-3  # the low-resolution tokens reach both rows
  assert np.abs(cond_low - cond).max() > 1e-3
  with pytest.raises(ValueError, match='no negative prompt'):
    model.encode_text(params, pack_conditioning(words, low_a), words)


def test_two_stages_sample_64_px_images_from_the_base_tokens(trained):
  config, root, _, _ = trained
  with config.unlocked():
    config.weights = str(root / 'stage')  # a workdir: super_res from its checkpoint
  with pytest.raises(Exception, match='tokenizer'):
    SuperResolution.load(config)  # a workdir of the super_res stage holds no tokenizer
  # The weights dir export writes: the stage's transformer and the 64 px tokenizer.
  weights = root / 'weights'
  data = f'--config.data.data_dir={root / "tfds"}'
  base = f'--config.super_res.base_weights={config.super_res.base_weights}'
  r = run_cli(
    'tcts_jax.export',
    '--config=configs/shapes.py:super_res,tiny',
    data,
    base,
    f'--tokenizer={root / "tokenizer"}',
    f'--super_res={root / "stage"}',
    f'--out={weights}',
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert sorted(p.name for p in weights.iterdir()) == ['super_res.safetensors', 'tokenizer.safetensors']
  t2x = SuperResolution.load(config, str(weights))
  gen = t2x.generate(['a red circle', 'a blue square'], seed=1, steps=4, base_settings=dict(steps=4))
  assert gen.images.shape == (2, 64, 64, 3) and gen.tokens.shape == (2, 256)
  assert gen.trajectory['base_images'].shape == (2, 32, 32, 3)
  assert np.all(gen.tokens < t2x.model.codebook_size)
  # The base stage is the base model's own sampling, seed for seed.
  alone = t2x.base.generate(['a red circle', 'a blue square'], seed=1, steps=4)
  np.testing.assert_array_equal(gen.trajectory['base_images'], alone.images)
  assert build_super_res(config, t2x.base.models).num_tokens == 256

  out = root / 'grid.png'
  args = ['--config=configs/shapes.py:super_res,tiny', base, f'--weights={weights}', '--prompt=a red circle']
  r = run_cli('tcts_jax.sample', *args, '--num_samples=2', '--config.super_res.steps=4', f'--out={out}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert PIL.Image.open(out).size[0] >= 128  # two 64 px images side by side
