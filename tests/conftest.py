"""Shared fixtures. Compilation dominates small tests, so models and jitted functions are built once."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def tiny_config():
  from tcts_jax.utils.config import load_config

  return load_config('configs/shapes.py:sample,tiny')


@pytest.fixture(scope='session')
def tiny_model(tiny_config):
  """(config, models, params): the tiny config with randomly initialised params (no training)."""
  import jax
  from tcts_jax.data import get_dataset
  from tcts_jax.models import build_models, init_params

  models = build_models(tiny_config, get_dataset(tiny_config.data).vocabulary())
  params = init_params(models, tiny_config.data.image_size, jax.random.key(0))
  return tiny_config, models, params


def make_sampler(models, cfg, **kwargs):
  """The sampler of our `models` (generator and selector handed over as functions)."""
  from tcts_jax.sampling.sampler import Sampler

  return Sampler(models.masked_generator(), cfg, models.token_selector(), **kwargs)


def run_cli(module, *args, timeout=600, env=None, cwd=REPO):
  """Run `python -m module args...` (from the repo root unless `cwd` says otherwise); the CompletedProcess."""
  return subprocess.run(
    [sys.executable, '-m', module, *map(str, args)],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=timeout,
    env={**os.environ, **(env or {})},
  )


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  from tcts_jax.data import shapes_tfds

  data_dir = tmp_path_factory.mktemp('tfds')
  shapes_tfds.build('tiny', data_dir=str(data_dir))
  return data_dir


@pytest.fixture(scope='session')
def tiny_weights(tmp_path_factory, tiny_data_dir):
  """Tiny tokenizer + generator trained for a few steps through the real CLIs, then exported (no image
  summaries: the generator's compiles a whole sampler)."""
  root = tmp_path_factory.mktemp('tiny_run')
  common = [f'--config.data.data_dir={tiny_data_dir}', '--config.train.image_every=0']
  for stage, extra in [('tokenizer', []), ('generator', [f'--config.tokenizer_checkpoint={root / "tokenizer"}'])]:
    r = run_cli(
      'tcts_jax.train', f'--config=configs/shapes.py:{stage},tiny', f'--workdir={root / stage}', *common, *extra
    )
    assert r.returncode == 0, r.stderr[-3000:]
  r = run_cli(
    'tcts_jax.export',
    '--config=configs/shapes.py:sample,tiny',
    f'--tokenizer={root / "tokenizer"}',
    f'--generator={root / "generator"}',
    f'--out={root / "weights"}',
  )
  assert r.returncode == 0, r.stderr[-3000:]
  return root / 'weights'
