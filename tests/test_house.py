"""The seams of the house: the sampler samples any model given as functions, and a strategy or a metric of
one's own is one new module named in the config."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.sampling.model import MaskedGenerator, TokenSelector
from tcts_jax.sampling.sampler import Sampler, sampler_config
from tests.conftest import REPO, make_sampler

N, K = 16, 8  # canvas of the toy model below, codebook size


def toy_model() -> MaskedGenerator:
  """Not our generator: a pure function that strongly prefers token (position % K) everywhere, and a
  made-up attention map in which the first half of the canvas receives all the attention."""

  def encode_text(params, text_ids, negative_ids):
    del params, negative_ids
    return {'scale': jnp.ones((2 * text_ids.shape[0],))}  # a text state: 2B rows

  def logits(params, tokens, text, attention_layer):
    preferred = jax.nn.one_hot(jnp.arange(N) % K, K) * params['peak']
    out = jnp.broadcast_to(preferred, tokens.shape + (K,)) * text['scale'][:, None, None]
    if attention_layer is None:
      return out, None
    received = jnp.where(jnp.arange(N) < N // 2, 2.0, 0.0) / N  # columns: half the tokens get everything
    attention = jnp.broadcast_to(received, (tokens.shape[0], 1, N, N))
    return out, {'self_attention': attention, 'cross_attention': jnp.zeros((tokens.shape[0], 1, N, 1))}

  return MaskedGenerator(num_tokens=N, codebook_size=K, mask_id=K, num_layers=1, encode_text=encode_text, logits=logits)


def toy_selector() -> TokenSelector:
  """Doubts every token at an odd position."""
  return TokenSelector(
    encode_text=lambda params, ids, neg: {'rows': jnp.zeros((2 * ids.shape[0],))},
    logits=lambda params, tokens, ratio, text: jnp.where(jnp.arange(N) % 2 == 1, 5.0, -5.0) * jnp.ones(tokens.shape),
  )


@pytest.fixture(scope='module')
def cfg(tiny_config):
  return tiny_config.sampler


@pytest.mark.parametrize('strategy', ['uniform', 'purity', 'random_revoke', 'fas', 'tcts_fas', 'u2r'])
def test_sampler_runs_a_model_given_only_as_functions(cfg, strategy):
  settings = sampler_config(cfg, strategy=strategy, steps=6, fas_layer=0)
  sampler = Sampler(toy_model(), settings, toy_selector(), trajectory=True)
  out = sampler({'peak': 50.0}, np.zeros((3, 5), np.int32), jax.random.key(0))
  assert out.images is None  # the toy model has no decoder: tokens only
  kept = np.asarray(out.trajectory['kept'])
  np.testing.assert_array_equal(kept.sum(-1), np.broadcast_to(sampler.schedules.keep_counts[:, None], (6, 3)))
  # The model's preference dominates every draw, whatever the order of keeping.
  np.testing.assert_array_equal(np.asarray(out.tokens), np.broadcast_to(np.arange(N) % K, (3, N)))
  if strategy == 'fas':  # the FAS split comes from the model's own attention map
    np.testing.assert_array_equal(np.asarray(out.trajectory['high_freq'])[0, 0], np.arange(N) < N // 2)


def test_tcts_follows_the_selector_of_a_toy_model(cfg):
  # Noise 0: TCTS keeps exactly the tokens the selector trusts (even positions) before the others.
  sampler = Sampler(
    toy_model(), sampler_config(cfg, strategy='tcts', steps=4, tcts_noise=0.0), toy_selector(), trajectory=True
  )
  kept = np.asarray(sampler({'peak': 50.0}, np.zeros((2, 5), np.int32), jax.random.key(0)).trajectory['kept'])
  first = kept[0, 0]
  assert first.sum() == sampler.schedules.keep_counts[0] and not first[1::2].any()


def test_sampling_imports_no_model_code():
  code = (
    'import sys\n'
    'import tcts_jax.sampling.sampler, tcts_jax.sampling.strategies, tcts_jax.sampling.model\n'
    'bad = sorted(m for m in sys.modules if m.startswith(("tcts_jax.models", "tcts_jax.training", '
    '"tcts_jax.data")))\n'
    'assert not bad, bad\n'
  )
  r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]


def test_api_imports_no_training_code():
  """Not on import, nor when it loads a model (ours or aMUSEd)."""
  code = (
    'import sys\nfrom tcts_jax.api import TextToImage, load_config\n'
    'TextToImage.load()\nTextToImage.load(load_config("configs/amused.py:tiny"))\n'
    'bad = sorted(m for m in sys.modules if m.startswith("tcts_jax.training"))\nassert not bad, bad\n'
  )
  r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]


def test_commands_import_together():
  # Flags are defined under __main__, so importing several commands defines nothing twice.
  code = 'import tcts_jax.sample, tcts_jax.refine, tcts_jax.edit, tcts_jax.train, tcts_jax.evaluate, tcts_jax.export\n'
  r = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]


@pytest.fixture
def plugins(tmp_path, monkeypatch):
  """A package of one's own, `my_plugins`, on the import path: a strategy and a metric, one module each."""
  package = tmp_path / 'my_plugins'
  package.mkdir()
  (package / '__init__.py').write_text('')
  (package / 'strategies.py').write_text(
    textwrap.dedent('''
      """Keep the least probable tokens first (revocable): the opposite of purity."""
      import jax.numpy as jnp
      from tcts_jax.sampling.strategies import Strategy

      def least_confident(cfg):
        del cfg
        return Strategy('least_confident', True, lambda s: -s.logp)
  ''')
  )
  (package / 'brightness.py').write_text(
    textwrap.dedent('''
      """Mean brightness of each image, in [0, 1]."""
      import numpy as np
      from tcts_jax.evaluation.evaluators import Column, Evaluator as Base

      class Evaluator(Base):
        columns = (Column('brightness', 'brightness', 100, 1, True),)
        compared = ('brightness',)
        description = 'brightness: mean pixel value.'

        def per_image(self, images, example):
          return {'brightness': images.reshape(len(images), -1).mean(-1) / 255.0}
  ''')
  )
  monkeypatch.syspath_prepend(str(tmp_path))
  return tmp_path


def test_a_strategy_of_ones_own_is_one_module(plugins, tiny_model):
  config, models, params = tiny_model
  sampler = make_sampler(
    models, sampler_config(config.sampler, strategy='my_plugins.strategies.least_confident', steps=4), trajectory=True
  )
  out = sampler(params, models.text_tokenizer.encode_batch(['a red circle', 'a blue square']), jax.random.key(0))
  np.testing.assert_array_equal(
    np.asarray(out.trajectory['kept']).sum(-1), np.broadcast_to(sampler.schedules.keep_counts[:, None], (4, 2))
  )
  with pytest.raises(ValueError, match='my_plugins.strategies has no'):
    make_sampler(models, sampler_config(config.sampler, strategy='my_plugins.strategies.nope'))


def test_a_metric_of_ones_own_is_one_module(plugins, tiny_weights, tiny_data_dir, tmp_path):
  from tcts_jax.evaluation.job import run_eval
  from tcts_jax.utils.config import load_config

  config = load_config('configs/shapes.py:eval,smoke,tiny')
  with config.unlocked():
    config.data.data_dir = str(tiny_data_dir)
    config.eval.update(
      grid=('purity@4', 'uniform@4'),
      num_images=8,
      compare=(('purity@4', 'uniform@4'),),
      metrics=('alignment', 'my_plugins.brightness'),
      reference_rows=False,
      bootstrap=50,
    )
    config.eval.refinement.base = None
  results = run_eval(config, tmp_path / 'eval', str(tiny_weights))
  for row in results['rows']:
    b = row['metrics']['brightness']
    assert 0 < b['ci95'][0] <= b['value'] <= b['ci95'][1] < 1
  assert 'brightness' in results['comparisons'][0]['difference']
  assert '| brightness |' in (tmp_path / 'eval' / 'results.md').read_text()
