"""The trainer: losses go down, checkpoints resume, and the step runs on an 8-device data mesh."""

import os
import subprocess
import sys

import numpy as np

from tcts_jax.data import get_dataset, pipeline
from tcts_jax.models import abstract_params, build_models, image_tokens
from tcts_jax.training.trainer import encode_training_set, train_and_evaluate
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import load_config

from tests.conftest import REPO


def tiny(stage, data_dir, **train):
  config = load_config(f'configs/shapes.py:{stage},tiny')
  with config.unlocked():
    config.data.data_dir = str(data_dir)
    config.train.update(train)
  return config


def test_tokenizer_loss_goes_down_and_resumes(tiny_data_dir, tmp_path):
  config = tiny('tokenizer', tiny_data_dir, num_steps=10, log_every=5, image_every=0, checkpoint_every=5)
  state, history = train_and_evaluate(config, tmp_path)
  assert int(state.step) == 10
  first, last = history[0][1], history[-1][1]
  assert last['loss'] < first['loss']
  assert 0 < last['batch_code_usage'] <= 1

  # A longer run in the same workdir resumes from step 10 instead of starting over.
  with config.unlocked():
    config.train.num_steps = 15
  state, history = train_and_evaluate(config, tmp_path)
  assert int(state.step) == 15 and [s for s, _ in history] == [15]


def test_generator_loss_goes_down(tiny_data_dir, tiny_weights, tmp_path):
  config = tiny('generator', tiny_data_dir, num_steps=30, log_every=10, image_every=0, learning_rate=3e-3)
  with config.unlocked():
    config.tokenizer_checkpoint = str(tiny_weights)  # an exported weights dir serves as well as a workdir
  state, history = train_and_evaluate(config, tmp_path / 'gen')
  assert history[-1][1]['loss'] < history[0][1]['loss']
  assert np.isfinite(history[-1][1]['masked_accuracy'])


def test_training_set_codes_equal_encoding_each_batch(tiny_data_dir, tiny_weights):
  # The generator and selector stages read the codes encoded once; they must be the step's own encoding.
  tok = tiny('tokenizer', tiny_data_dir)
  dataset = get_dataset(tok.data)
  models = build_models(tok, dataset.vocabulary())
  params = checkpoint.load_part(tiny_weights, 'tokenizer', abstract_params(models, 32)['tokenizer'])
  codes = encode_training_set(
    dataset, lambda images: image_tokens(models, params, images), models.num_tokens, batch_size=24
  )
  assert codes.shape == (dataset.num_records('train'), models.num_tokens)
  batch = next(pipeline.make_loader(dataset, 'train', 16, seed=3))
  np.testing.assert_array_equal(codes[batch['index']], image_tokens(models, params, batch['image']))
  assert len(np.unique(codes)) > 1


def test_train_step_on_eight_devices(tiny_data_dir, tmp_path):
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8', 'JAX_PLATFORMS': 'cpu'}
  code = (
    'import jax; assert jax.device_count() == 8\n'
    'from tests.test_train import tiny\n'
    'from tcts_jax.training.trainer import train_and_evaluate\n'
    f'c = tiny("tokenizer", {str(tiny_data_dir)!r}, num_steps=3, log_every=1, image_every=0)\n'
    f's, h = train_and_evaluate(c, {str(tmp_path)!r})\n'
    'assert int(s.step) == 3 and len(h) == 3\n'
    'print("params sharding:", jax.tree.leaves(s.params)[0].sharding)\n'
  )
  r = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'params sharding' in r.stdout


def test_edge_weights_pick_out_object_outlines():
  import jax.numpy as jnp
  from tcts_jax.training.stages import edge_weights

  flat = jnp.full((2, 8, 8, 3), 0.3)
  np.testing.assert_allclose(edge_weights(flat, 10.0), 1.0)  # no edges: the plain mean
  img = flat.at[0, 2:5, 2:5].set(-0.9)  # one 3x3 object on image 0
  w = np.asarray(edge_weights(img, 10.0))[..., 0]
  assert w.shape == (2, 8, 8) and abs(w.mean() - 1.0) < 1e-6
  outline = np.zeros((8, 8), bool)
  outline[1:6, 1:6] = True
  outline[3, 3] = False  # the object's centre has no different neighbour
  for corner in [(1, 1), (1, 5), (5, 1), (5, 5)]:
    outline[corner] = False  # diagonal neighbours do not count
  assert np.all(w[0][outline] > 5 * w[0][~outline].max())
  np.testing.assert_allclose(w[0][~outline], w[1, 0, 0], rtol=1e-6)  # everything else: the base weight
  np.testing.assert_allclose(w[1], w[1, 0, 0], rtol=1e-6)


def test_smoothed_cross_entropy_equals_optax_on_smoothed_one_hot():
  import jax
  import optax
  from tcts_jax.training.stages import smoothed_cross_entropy

  logits = 3.0 * jax.random.normal(jax.random.key(0), (2, 5, 37))
  labels = jax.random.randint(jax.random.key(1), (2, 5), 0, 37)
  for s in (0.0, 0.1, 0.5):
    reference = lambda x: optax.softmax_cross_entropy(x, optax.smooth_labels(jax.nn.one_hot(labels, 37), s))
    ours = lambda x: smoothed_cross_entropy(x, labels, s)
    np.testing.assert_allclose(ours(logits), reference(logits), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
      jax.grad(lambda x: ours(x).sum())(logits), jax.grad(lambda x: reference(x).sum())(logits), rtol=1e-5, atol=1e-6
    )
