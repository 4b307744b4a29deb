"""The tokenizer's held-out evaluation scores its reconstructions, not the originals."""

import json

from tcts_jax.data import shapes
from tcts_jax.evaluation.tokenizer import evaluate_tokenizer
from tcts_jax.models import abstract_params, build_models
from tcts_jax.utils import checkpoint
from tcts_jax.utils.config import load_config

from tests.conftest import run_cli


def test_tokenizer_eval_scores_reconstructions(tiny_weights, tiny_data_dir):
  config = load_config('configs/shapes.py:tokenizer,tiny')
  with config.unlocked():
    config.data.data_dir = str(tiny_data_dir)
  models = build_models(config, shapes.vocabulary())
  params = checkpoint.load_part(tiny_weights, 'tokenizer', abstract_params(models, 32)['tokenizer'])
  r = evaluate_tokenizer(config, params, num_images=20, batch_size=8)
  assert r['num_images'] == 20
  assert r['originals']['object_accuracy'] == 1.0  # the checker reads real renders exactly
  # A tokenizer trained for 20 steps reconstructs blurry blobs: it must not score like the originals.
  assert r['object_accuracy'] < 0.5 and r['l1'] > 0.01
  assert 1 <= r['codes_used'] <= config.tokenizer.codebook_size
  assert r['code_usage'] == r['codes_used'] / config.tokenizer.codebook_size


def test_tokenizer_eval_cli(tiny_weights, tiny_data_dir):
  r = run_cli(
    'tcts_jax.tokenizer_eval',
    '--config=configs/shapes.py:tokenizer,tiny',
    f'--tokenizer={tiny_weights}',
    f'--config.data.data_dir={tiny_data_dir}',
    '--num_images=8',
  )
  assert r.returncode == 0, r.stderr[-2000:]
  assert json.loads(r.stdout)['num_images'] == 8
  r = run_cli('tcts_jax.tokenizer_eval', '--config=configs/shapes.py:tokenizer,tiny', f'--tokenizer={tiny_data_dir}')
  assert r.returncode == 2 and 'no tokenizer weights' in r.stderr.strip().splitlines()[-1]
