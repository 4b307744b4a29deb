"""TCTS selector (docs/design.md §4): model, training stage, held-out metrics and the tcts / tcts_fas strategies.

Tiny config, random weights wherever the property holds for any weights (sampling); the training test
trains the selector on a random-init frozen generator saved to a weights dir, as the CLI would load it.
"""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.training import train_state

from tcts_jax.utils import checkpoint
from tcts_jax.api import TextToImage, load_config
from tests.conftest import make_sampler
from tcts_jax.data import get_dataset, pipeline, shapes
from tcts_jax.models.selector import selector_forward
from tcts_jax.sampling.sampler import Sampler, _truncate, sampler_config
from tcts_jax.sampling.strategies import make_strategy
from tcts_jax.evaluation.selector import evaluate_selector
from tcts_jax.training.stages import SelectorStage, auroc
from tcts_jax.training.trainer import make_optimizer, train_step

PROMPTS = [
  'a large red circle in the middle',
  'a small blue square at the top left',
  'a big green triangle at the bottom',
  'a tiny yellow disk on the right side',
]


@pytest.fixture(scope='module')
def run(tiny_model):
  """run(seed=0, **sampler overrides) -> (SampleOutput as numpy, sampler), with trajectory; cached."""
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(PROMPTS)
  cache = {}

  def _run(seed=0, **overrides):
    cfg = sampler_config(config.sampler, **overrides)
    key = cfg.to_json()
    if key not in cache:
      cache[key] = make_sampler(models, cfg, trajectory=True)
    return jax.tree.map(np.asarray, cache[key](params, ids, jax.random.key(seed))), cache[key]

  return _run


@pytest.fixture(scope='module')
def weights_dir(tmp_path_factory, tiny_model):
  """A weights dir (tokenizer, text, generator, vocab; no selector) from the random tiny params."""
  _, _, params = tiny_model
  path = tmp_path_factory.mktemp('selector_weights')
  for part in ('tokenizer', 'text', 'generator'):
    checkpoint.save_weights(path / f'{part}.safetensors', params[part])
  (path / 'vocab.json').write_text(json.dumps(shapes.vocabulary()))
  return path


# --- model --------------------------------------------------------------------------------------------


def test_selector_logits_and_cross_attention(tiny_model):
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(['a red circle', 'a small blue square at the top'])
  text, mask = models.text_encoder.apply({'params': params['text']}, ids)
  tokens = jax.random.randint(jax.random.key(0), (2, models.num_tokens), 0, models.mask_id + 1)  # [MASK] too
  drop = jnp.array([False, True])
  logits, self_attn, cross_attn = selector_forward(
    models.selector, params['selector'], tokens, jnp.array([0.2, 0.9]), text, mask, drop, attention_layer=0
  )
  assert logits.shape == (2, models.num_tokens) and bool(jnp.isfinite(logits).all())
  assert cross_attn.shape == (2, config.selector.num_heads, models.num_tokens, config.text.max_length)
  np.testing.assert_allclose(cross_attn.sum(-1), 1.0, atol=1e-5)
  np.testing.assert_allclose(self_attn.sum(-1), 1.0, atol=1e-5)
  assert float(jnp.abs(cross_attn[0][..., ~np.asarray(mask[0])]).max()) < 1e-6  # padding gets nothing
  np.testing.assert_allclose(cross_attn[1][..., 0], 1.0, atol=1e-5)  # null text: one slot
  plain, _, _ = selector_forward(models.selector, params['selector'], tokens, jnp.array([0.2, 0.9]), text, mask, drop)
  np.testing.assert_allclose(plain, logits, atol=1e-5)
  other_ratio, _, _ = selector_forward(
    models.selector, params['selector'], tokens, jnp.array([0.7, 0.1]), text, mask, drop
  )
  assert float(jnp.abs(other_ratio - plain).max()) > 1e-4  # the ratio embedding reaches the output


def test_auroc_matches_pairwise_definition():
  rs = np.random.RandomState(0)
  scores = rs.randint(0, 5, 300).astype(np.float32)  # many ties
  labels = rs.rand(300) < 0.4
  pos, neg = scores[labels], scores[~labels]
  pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
  np.testing.assert_allclose(float(auroc(scores, labels)), pairwise, rtol=1e-5)
  np.testing.assert_allclose(float(auroc(labels.astype(float), labels)), 1.0)
  np.testing.assert_allclose(float(auroc(-labels.astype(float), labels)), 0.0)
  assert np.isnan(float(auroc(scores, np.ones(300, bool))))


# --- training ------------------------------------------------------------------------------------------


def train_selector(tiny_data_dir, weights_dir, variant='', steps=30):
  """Selector trained `steps` steps on the frozen random-init generator: (config, models, params, bce before/after)."""
  config = load_config(f'configs/shapes.py:selector,tiny{variant}')
  config.generator_checkpoint = str(weights_dir)
  config.data.data_dir = str(tiny_data_dir)
  from tcts_jax.models import build_models

  models = build_models(config, shapes.vocabulary())
  stage = SelectorStage(config, models)
  frozen = stage.frozen()
  loader = pipeline.make_loader(
    get_dataset(config.data), 'train', config.train.batch_size, tokenize=models.text_tokenizer.encode
  )
  arrays = lambda b: {k: jnp.asarray(b[k]) for k in ('image', 'text_ids')}
  held_out = arrays(next(loader))
  eval_loss = jax.jit(lambda p: stage.loss(p, frozen, held_out, jax.random.key(123))[0])
  state = train_state.TrainState.create(
    apply_fn=None, params=stage.init(jax.random.key(0), held_out), tx=make_optimizer(config.train)
  )
  before = float(eval_loss(state.params))
  step = jax.jit(functools.partial(train_step, stage))
  for _ in range(steps):
    state, metrics = step(state, frozen, arrays(next(loader)), jax.random.key(1))
  assert np.isfinite(float(metrics['loss']))
  return config, models, {**frozen, **state.params}, before, float(eval_loss(state.params))


@pytest.fixture(scope='module')
def trained(tiny_data_dir, weights_dir):
  return train_selector(tiny_data_dir, weights_dir)


def test_selector_training_lowers_bce(trained):
  *_, before, after = trained
  assert after < before - 0.05, (before, after)


def test_copy_selector_training_lowers_bce(tiny_data_dir, weights_dir):
  # The `copy` variant's examples (uniform ratios, visible tokens kept) train as well, in fewer steps here.
  *_, before, after = train_selector(tiny_data_dir, weights_dir, ',copy', steps=15)
  assert after < before - 0.05, (before, after)


def test_evaluate_selector_on_held_out_split(trained):
  config, models, params, *_ = trained
  metrics = evaluate_selector(config, params, num_batches=2, models=models)
  assert metrics['num_positions'] == 2 * config.train.batch_size * models.num_tokens
  assert 0.0 <= metrics['auroc'] <= 1.0 and 0.0 <= metrics['accuracy'] <= 1.0 and metrics['bce'] > 0


# --- training examples (docs/design.md §4.2) ---------------------------------------------------------------


EXAMPLE_ROWS = 1024


@pytest.fixture(scope='module')
def examples(tiny_model):
  """examples(variant, **selector overrides) -> the selector stage's training examples (numpy) of the same
  EXAMPLE_ROWS random code grids and rng (so the same corruption), drawn by the tiny random generator; cached."""
  _, models, params = tiny_model
  ids = np.asarray(models.text_tokenizer.encode_batch(PROMPTS))
  codes = jax.random.randint(jax.random.key(1), (EXAMPLE_ROWS, models.num_tokens), 0, models.generator.codebook_size)
  batch = {'codes': codes, 'text_ids': jnp.asarray(np.resize(ids, (EXAMPLE_ROWS, ids.shape[1])))}
  cache = {}

  def _examples(variant='', **overrides):
    key = (variant, tuple(sorted(overrides.items())))
    if key not in cache:
      config = load_config(f'configs/shapes.py:selector,tiny{variant}')
      config.selector.update(overrides)
      stage = SelectorStage(config, models)
      cache[key] = jax.tree.map(np.asarray, jax.jit(stage.examples)(params, batch, jax.random.key(0)))
    return cache[key]

  return _examples


def ks_distance_to_uniform(samples):
  """Kolmogorov-Smirnov distance between the samples' empirical CDF and U[0, 1]'s."""
  x, n = np.sort(samples), len(samples)
  return max(np.max(np.arange(1, n + 1) / n - x), np.max(x - np.arange(n) / n))


def test_uniform_ratio_covers_the_unit_interval_uniformly(examples, tiny_model):
  # The masked fraction takes the N values k/N, k = 1..N, so its CDF is within 1/N of U[0, 1]'s; 1.63/sqrt(n)
  # is the KS test's 1% critical value for n draws.
  _, models, _ = tiny_model
  n = models.num_tokens
  bound = 1 / n + 1.63 / np.sqrt(EXAMPLE_ROWS)
  uniform = examples(',copy')['ratio']
  assert ks_distance_to_uniform(uniform) < bound
  assert uniform.min() == 1 / n and uniform.max() == 1.0
  cosine = examples('')['ratio']  # the generator's cosine ratios (mostly high): far from uniform
  assert ks_distance_to_uniform(cosine) > 2 * bound


def test_keep_examples_equal_the_input_at_visible_positions(examples, tiny_model):
  _, models, _ = tiny_model
  for variant in ('', ',copy'):
    ex = examples(variant)
    masked = ex['inputs'] == models.mask_id
    assert (ex['x_hat'] != models.mask_id).all()  # masked positions drawn
    np.testing.assert_allclose(ex['ratio'], masked.mean(-1))
    visible_same = ex['x_hat'][~masked] == ex['inputs'][~masked]
    if variant:  # copy: visible_tokens='keep'
      assert visible_same.all()
    else:  # default: 'redraw' (the random generator redraws most visible tokens differently)
      assert visible_same.mean() < 0.5


def test_example_draws_follow_the_sampler_truncation(examples, tiny_model):
  # x̂ drawn with guidance 2, temperature 0.5 and top-p 0.6 lies in the sampler's nucleus of cond + 2 (cond -
  # uncond) over 0.5; the untruncated draw (the default settings) does not.
  _, models, params = tiny_model
  ex = examples('', generator_guidance=2.0, generator_temperature=0.5, generator_top_p=0.6)

  @jax.jit
  def nucleus(inputs, text, text_mask):
    b = len(inputs)
    twice = lambda a: jnp.concatenate([a, a])
    drop = jnp.arange(2 * b) >= b
    logits = models.generator.apply({'params': params['generator']}, twice(inputs), twice(text), twice(text_mask), drop)
    cond, uncond = logits[:b], logits[b:]
    return jnp.isfinite(_truncate((cond + 2.0 * (cond - uncond)) / 0.5, 0, 0.6))

  allowed = np.asarray(nucleus(ex['inputs'], ex['text'], ex['text_mask']))
  assert 1 < allowed.sum(-1).mean() < allowed.shape[-1]  # a real truncation, not the argmax alone
  in_nucleus = lambda x_hat: np.take_along_axis(allowed, x_hat[..., None], -1)[..., 0]
  assert in_nucleus(ex['x_hat']).all()
  untruncated = examples('')
  np.testing.assert_array_equal(untruncated['inputs'], ex['inputs'])  # the same corruption
  assert not in_nucleus(untruncated['x_hat']).all()


def test_selector_draw_settings_follow_the_sampler():
  config = load_config('configs/shapes.py:selector')
  pairs = [
    ('generator_guidance', 'guidance_scale'),
    ('generator_temperature', 'temperature'),
    ('generator_top_p', 'top_p'),
  ]
  for selector_key, sampler_key in pairs:
    assert config.selector[selector_key] == config.sampler[sampler_key]
    config.sampler[sampler_key] = 0.5  # a sampler setting carries over ...
    assert config.selector[selector_key] == 0.5
    config.selector[selector_key] = 0.25  # ... until the selector's own is set, which leaves the sampler's alone
    config.sampler[sampler_key] = 0.75
    assert (config.selector[selector_key], config.sampler[sampler_key]) == (0.25, 0.75)


def test_selector_stage_bad_config(tiny_model, weights_dir):
  _, models, _ = tiny_model
  config = load_config('configs/shapes.py:selector,tiny')
  with pytest.raises(ValueError, match='needs --config.generator_checkpoint'):
    SelectorStage(config, models).frozen()
  for key, value, message in [
    ('ratio', 'linear', "unknown selector.ratio 'linear'"),
    ('visible_tokens', 'freeze', "unknown selector.visible_tokens 'freeze'"),
    ('generator_top_p', 0.0, 'generator_top_p in'),
    ('generator_temperature', 0.0, 'generator_temperature must be > 0'),
  ]:
    bad = load_config('configs/shapes.py:selector,tiny')
    bad.selector[key] = value
    with pytest.raises(ValueError, match=message):
      SelectorStage(bad, models)
  config.selector.label = 'nope'
  with pytest.raises(ValueError, match="unknown selector.label 'nope'"):
    SelectorStage(config, models)
  with pytest.raises(ValueError, match='needs a `selector` config section'):
    SelectorStage(config, dataclasses.replace(models, selector=None))


# --- sampling ------------------------------------------------------------------------------------------


def test_tcts_keeps_exactly_k_and_revokes(run, tiny_model):
  _, models, _ = tiny_model
  out, sampler = run(strategy='tcts')
  kept = out.trajectory['kept']
  np.testing.assert_array_equal(kept.sum(-1), np.broadcast_to(sampler.schedules.keep_counts[:, None], kept.shape[:2]))
  assert (out.tokens != models.mask_id).all()
  assert (kept[:-1] & ~kept[1:]).sum() > 0  # revocable: some kept token is re-masked later


def test_tcts_keeps_the_lowest_selector_scores_without_noise(run):
  out, sampler = run(strategy='tcts', tcts_noise=0.0, tcts_sharpness=2.0)
  kept, scores = out.trajectory['kept'], out.trajectory['selector_logits']
  for t in range(len(kept) - 1):  # the last step keeps everything
    worst_kept = np.where(kept[t], scores[t], -np.inf).max(-1)
    best_dropped = np.where(kept[t], np.inf, scores[t]).min(-1)
    assert (worst_kept <= best_dropped).all()


def _direct_scores(tiny_model, tokens, ratio, drop_all):
  """Selector logits of x̂ computed outside the sampler, with the prompts (or null text if drop_all)."""
  _, models, params = tiny_model
  text, mask = models.text_encoder.apply({'params': params['text']}, models.text_tokenizer.encode_batch(PROMPTS))
  drop = jnp.full(len(PROMPTS), drop_all)
  return np.asarray(
    models.selector.apply({'params': params['selector']}, tokens, jnp.full(len(PROMPTS), ratio), text, mask, drop)
  )


def test_selector_guidance(run, tiny_model):
  # g = 1: the score the sampler used at every step is the conditional selector score of that step's x̂.
  out, sampler = run(seed=7, strategy='tcts', selector_guidance=1.0)
  traj, ratios = out.trajectory, sampler.schedules.input_mask_ratio
  for t in (0, 15):
    cond = _direct_scores(tiny_model, traj['tokens'][t], ratios[t], False)
    np.testing.assert_allclose(traj['selector_logits'][t], cond, atol=1e-4)
  # g = 2.5: s_u + g (s_c - s_u) with the learned null text, which differs from the conditional score.
  out, sampler = run(seed=7, strategy='tcts', selector_guidance=2.5)
  traj = out.trajectory
  for t in (0, 15):
    cond = _direct_scores(tiny_model, traj['tokens'][t], ratios[t], False)
    uncond = _direct_scores(tiny_model, traj['tokens'][t], ratios[t], True)
    np.testing.assert_allclose(traj['selector_logits'][t], uncond + 2.5 * (cond - uncond), atol=1e-4)
    assert np.abs(traj['selector_logits'][t] - cond).max() > 1e-4


def test_tcts_fas_all_high_frequency_equals_tcts(run, tiny_config):
  tcts, _ = run(seed=8, strategy='tcts')
  all_high, _ = run(seed=8, strategy='tcts_fas', fas_threshold=-1.0)
  np.testing.assert_array_equal(all_high.trajectory['kept'], tcts.trajectory['kept'])
  np.testing.assert_array_equal(all_high.tokens, tcts.tokens)
  # The named strategy is fas over tcts, whatever fas_base says.
  assert make_strategy('tcts_fas', sampler_config(tiny_config.sampler)).name == 'fas[tcts]'
  assert make_strategy('fas', sampler_config(tiny_config.sampler, fas_base='tcts')).name == 'fas[tcts]'


def test_tcts_fas_all_low_frequency_equals_tcts_persistent(run, tiny_config):
  # Table 5's TCTS + persistent: the persistent weight on every kept position, over the selector's logits.
  per, _ = run(seed=9, strategy='tcts_persistent', persistent_weight=5.0)
  all_low, _ = run(seed=9, strategy='tcts_fas', fas_threshold=1e9, persistent_weight=5.0)
  np.testing.assert_array_equal(all_low.trajectory['kept'], per.trajectory['kept'])
  np.testing.assert_array_equal(all_low.tokens, per.tokens)
  strategy = make_strategy('tcts_persistent', sampler_config(tiny_config.sampler))
  assert strategy.name == 'persistent[tcts]' and strategy.revocable and strategy.needs_selector


@pytest.mark.parametrize(
  'overrides, message',
  [
    (dict(strategy='tcts', tcts_sharpness=0.0), 'tcts_sharpness must be > 0'),
    (dict(strategy='tcts', tcts_noise=-1.0), 'tcts_noise must be >= 0'),
    (dict(strategy='tcts', selector_guidance=-1.0), 'selector_guidance must be >= 0'),
    (dict(strategy='fas', fas_base='tcts_fas'), 'unknown FAS base'),
  ],
)
def test_bad_tcts_settings(tiny_model, overrides, message):
  config, models, _ = tiny_model
  with pytest.raises(ValueError, match=message):
    make_sampler(models, sampler_config(config.sampler, **overrides))


def test_tcts_without_selector_is_a_clear_error(tiny_model):
  config, models, params = tiny_model
  with pytest.raises(ValueError, match='needs a TCTS selector'):
    Sampler(models.masked_generator(), sampler_config(config.sampler, strategy='uniform:8,tcts:8'), selector=None)
  sampler = make_sampler(models, sampler_config(config.sampler, strategy='tcts_fas'))
  no_selector = {k: v for k, v in params.items() if k != 'selector'}
  with pytest.raises(ValueError, match='needs TCTS selector weights'):
    sampler(no_selector, models.text_tokenizer.encode_batch(PROMPTS[:1]), jax.random.key(0))


def test_api_loads_weights_with_and_without_selector(tiny_config, tiny_model, weights_dir, tmp_path):
  t2i = TextToImage.load(tiny_config, str(weights_dir))
  assert 'selector' not in t2i.params
  with pytest.raises(ValueError, match='needs TCTS selector weights'):
    t2i.generate(PROMPTS[:1], strategy='tcts')
  _, _, params = tiny_model
  checkpoint.save_weights(tmp_path / 'selector.safetensors', params['selector'])
  t2i = TextToImage.load(tiny_config, str(weights_dir), selector=str(tmp_path))
  np.testing.assert_array_equal(t2i.params['selector']['head']['kernel'], params['selector']['head']['kernel'])
  # A selector of another shape (here: another codebook size) fails in one line.
  bad = jax.tree.map(lambda a: np.zeros((a.shape[0] + 1,) + a.shape[1:], a.dtype), params['selector'])
  checkpoint.save_weights(tmp_path / 'selector.safetensors', bad)
  with pytest.raises(checkpoint.CheckpointError, match='does not match the config'):
    TextToImage.load(tiny_config, str(weights_dir), selector=str(tmp_path))
