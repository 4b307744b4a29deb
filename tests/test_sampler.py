"""Sampler properties (docs/design.md §2-3), on the tiny config with random weights (generator and selector): the
properties hold for any generator, so no training is needed. Every strategy of STRATEGIES is run (the oracle ones
with random reference tokens)."""

import collections
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tcts_jax.sampling import schedules
from tcts_jax.sampling.model import with_row_chunks
from tcts_jax.sampling.sampler import (
  Sampler,
  as_float32,
  guided_features,
  guided_logits,
  program_key,
  sampler_config,
  strategy_per_step,
)
from tcts_jax.sampling.strategies import PRESETS, STRATEGIES, make_strategy
from tcts_jax.utils.config import load_config
from tcts_jax.utils.precision import cast_floating
from tests.conftest import dot_generals, dot_operand_dtypes, make_sampler

PROMPTS = [
  'a large red circle in the middle',
  'a small blue square at the top left',
  'a big green triangle at the bottom',
  'a tiny yellow disk on the right side',
]
REFERENCE = np.random.default_rng(0).integers(0, 64, (len(PROMPTS), 64)).astype(np.int32)  # tiny: 64 codes, 64 tokens


# What a run was: its sampler config, its per-step arrays, and whether a strategy of it counts its own k.
Run = collections.namedtuple('Run', 'cfg schedules adaptive_count')


@pytest.fixture(scope='module')
def run(tiny_model):
  """run(seed=0, negative=None, **sampler overrides) -> (SampleOutput with trajectory and diagnostics, Run).

  One sampler built for every strategy serves all runs whose settings differ only in `PER_STEP_SETTINGS`
  (one compilation instead of one per strategy); each run hands it its own settings. Such a sampler samples as
  the strategy's own one does (test_diagnostics_and_extra_strategies_do_not_change_the_samples). Every run gets
  REFERENCE as the oracle strategies' reference tokens."""
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(PROMPTS)
  samplers = {}

  def _run(seed=0, negative=None, ids=ids, **overrides):
    cfg = sampler_config(config.sampler, **overrides)
    static, used = program_key(cfg)
    if static not in samplers:
      samplers[static] = make_sampler(models, cfg, trajectory=True, diagnostics=True, strategies=STRATEGIES)
    sampler = samplers[static]
    out = sampler(params, ids, jax.random.key(seed), negative, reference_tokens=REFERENCE, settings=cfg)
    adaptive = any(make_strategy(name, cfg).keep_count is not None for name in used)
    return jax.tree.map(np.asarray, out), Run(cfg, sampler.schedules_for(cfg), adaptive)

  return _run


def token_states(traj, mask_id):
  """Canvas after each step: x̂ where kept, [MASK] elsewhere. (T, B, N)."""
  return np.where(traj['kept'], traj['tokens'], mask_id)


# Read from the STRATEGIES table, not kept by hand (the tiny model's random selector serves the tcts* ones).
_BUILT = {name: make_strategy(name, load_config('configs/shapes.py:sample,tiny').sampler) for name in STRATEGIES}
ALL = list(STRATEGIES) + list(PRESETS)
FIXED = [name for name, s in _BUILT.items() if not s.revocable]
REVOCABLE = [name for name, s in _BUILT.items() if s.revocable] + list(PRESETS)


@pytest.mark.parametrize('strategy', ALL)
def test_exactly_k_kept_and_no_mask_left(run, tiny_model, strategy):
  _, models, _ = tiny_model
  out, ran = run(strategy=strategy)
  counts = out.trajectory['kept'].sum(-1)  # (T, B)
  if ran.adaptive_count:  # a count of its own (entropy_bounded): at least one new token a step until full
    before = np.concatenate([np.zeros_like(counts[:1]), counts[:-1]])
    np.testing.assert_array_equal(counts, np.minimum(np.maximum(counts, before + 1), models.num_tokens))
    assert (counts[-1] == models.num_tokens).all()
  else:
    np.testing.assert_array_equal(counts, np.broadcast_to(ran.schedules.keep_counts[:, None], counts.shape))
  assert (out.tokens != models.mask_id).all()
  assert out.tokens.min() >= 0 and out.tokens.max() < models.generator.codebook_size
  assert out.images.shape == (len(PROMPTS), 32, 32, 3)


@pytest.mark.parametrize('strategy', ALL)
def test_diagnostics_follow_the_trajectory(run, tiny_model, strategy):
  out, ran = run(strategy=strategy)
  kept, tokens, diag = out.trajectory['kept'], out.trajectory['tokens'], out.diagnostics
  before = np.concatenate([np.zeros_like(kept[:1]), kept[:-1]])  # visible entering each step
  np.testing.assert_array_equal(diag['decided'], (~before & kept).sum(-1))
  np.testing.assert_array_equal(diag['revoked'], (before & ~kept).sum(-1))
  # Every position is decided once more than it is revoked: an empty canvas ends full.
  np.testing.assert_array_equal((diag['decided'] - diag['revoked']).sum(0), tiny_model[1].num_tokens)
  np.testing.assert_array_equal(diag['midpoint_tokens'], tokens[(ran.cfg.steps - 1) // 2])
  assert diag['churn'].shape == diag['entropy_masked'].shape == diag['entropy_visible'].shape == kept.shape[:2]
  assert (diag['entropy_masked'] > 0).all() and (diag['entropy_visible'][0] == 0).all()  # nothing visible at first


@pytest.mark.parametrize('strategy', FIXED)
def test_fixed_strategies_never_change_a_kept_token(run, tiny_model, strategy):
  out, _ = run(strategy=strategy)
  canvas = token_states(out.trajectory, tiny_model[1].mask_id)
  kept = out.trajectory['kept']
  for t in range(len(kept) - 1):
    assert (kept[t + 1] | ~kept[t]).all()  # never revoked
    np.testing.assert_array_equal(canvas[t + 1][kept[t]], canvas[t][kept[t]])  # never changed
  assert not out.diagnostics['revoked'].any() and not out.diagnostics['churn'].any()


@pytest.mark.parametrize('strategy', ['purity', 'ivqd_purity'])
def test_redraw_leaves_fixed_strategies_alone(run, strategy):
  # visible_tokens='redraw' applies to revocable strategies only: a fixed one samples the very same tokens.
  keep, _ = run(strategy=strategy)
  redraw, _ = run(strategy=strategy, visible_tokens='redraw')
  np.testing.assert_array_equal(redraw.tokens, keep.tokens)


@pytest.mark.parametrize('strategy', REVOCABLE)
def test_kept_tokens_keep_their_value_by_default(run, tiny_model, strategy):
  # visible_tokens='keep': a revocable strategy re-masks tokens but never changes a kept one in place.
  out, _ = run(strategy=strategy)
  canvas = token_states(out.trajectory, tiny_model[1].mask_id)
  kept = out.trajectory['kept']
  for t in range(len(kept) - 1):
    stayed = kept[t] & kept[t + 1]
    np.testing.assert_array_equal(canvas[t + 1][stayed], canvas[t][stayed])
  assert not out.diagnostics['churn'].any()


@pytest.mark.parametrize('strategy', ['random_revoke', 'tcts_fas', 'oracle'])
def test_redraw_changes_kept_values_and_churn_counts_them(run, tiny_model, strategy):
  out, _ = run(strategy=strategy, visible_tokens='redraw')
  canvas = token_states(out.trajectory, tiny_model[1].mask_id)
  kept = out.trajectory['kept']
  stayed = kept[:-1] & kept[1:]  # kept after steps t and t + 1
  changed = stayed & (canvas[1:] != canvas[:-1])
  assert changed.any()  # the tiny random generator redraws visible tokens to other values
  churn = np.where(stayed.sum(-1) > 0, changed.sum(-1) / np.maximum(stayed.sum(-1), 1), 0.0)
  np.testing.assert_allclose(out.diagnostics['churn'][1:], churn, rtol=1e-6)
  assert not out.diagnostics['churn'][0].any()


def test_diagnostics_and_extra_strategies_do_not_change_the_samples(run, tiny_model):
  # `run` samples with diagnostics on a sampler built for every strategy; `plain` is the strategy's own.
  config, models, params = tiny_model
  for strategy in ('tcts_fas', 'ivqd_purity', 'uniform', 'random_revoke'):
    with_diagnostics, _ = run(seed=11, strategy=strategy)
    plain = make_sampler(models, sampler_config(config.sampler, strategy=strategy))
    tokens = plain(params, models.text_tokenizer.encode_batch(PROMPTS), jax.random.key(11)).tokens
    np.testing.assert_array_equal(np.asarray(tokens), with_diagnostics.tokens)
    assert plain(params, models.text_tokenizer.encode_batch(PROMPTS), jax.random.key(11)).diagnostics is None


def test_random_revoke_revokes(run):
  out, _ = run(strategy='random_revoke')
  kept = out.trajectory['kept']
  revoked = (kept[:-1] & ~kept[1:]).sum()
  # With 4 images x 16 steps, a uniformly random keep set revokes a large fraction of kept tokens.
  assert revoked > 0.2 * kept[:-1].sum()


def test_same_seed_same_output_other_seed_differs(run):
  a, _ = run(seed=1, strategy='random_revoke')
  b, _ = run(seed=1, strategy='random_revoke')
  c, _ = run(seed=2, strategy='random_revoke')
  np.testing.assert_array_equal(a.tokens, b.tokens)
  assert (a.tokens != c.tokens).any()


def test_persistent_with_huge_weight_equals_uniform(run):
  # Both keep visible tokens' values (visible_tokens='keep', the default).
  uni, _ = run(seed=3, strategy='uniform')
  per, _ = run(seed=3, strategy='persistent', persistent_weight=1e30)
  np.testing.assert_array_equal(uni.tokens, per.tokens)
  np.testing.assert_array_equal(uni.trajectory['kept'], per.trajectory['kept'])


def test_persistent_with_weight_one_equals_random_revoke(run):
  rr, _ = run(seed=4, strategy='random_revoke')
  per, _ = run(seed=4, strategy='persistent', persistent_weight=1.0)
  np.testing.assert_array_equal(rr.tokens, per.tokens)


def test_fas_all_high_frequency_equals_base_all_low_equals_persistent(run):
  # Attention received averages 1 per token, so threshold -1 marks everything high, 1e9 everything low.
  base, _ = run(seed=5, strategy='random_revoke')
  per, _ = run(seed=5, strategy='persistent', persistent_weight=7.0)
  all_high, _ = run(seed=5, strategy='fas', fas_base='random_revoke', fas_threshold=-1.0, persistent_weight=7.0)
  all_low, _ = run(seed=5, strategy='fas', fas_base='random_revoke', fas_threshold=1e9, persistent_weight=7.0)
  assert all_high.trajectory['high_freq'].all() and not all_low.trajectory['high_freq'].any()
  np.testing.assert_array_equal(all_high.tokens, base.tokens)
  np.testing.assert_array_equal(all_low.tokens, per.tokens)


def test_fas_map_splits_the_image(run):
  out, _ = run(strategy='fas')
  frac = out.trajectory['high_freq'].mean()
  assert 0.0 < frac < 1.0


def test_switching_presets_switch_at_the_middle(run, tiny_config):
  cfg = sampler_config(tiny_config.sampler, strategy='u2r', steps=16)
  assert strategy_per_step(cfg) == ['uniform'] * 8 + ['random_revoke'] * 8
  out, _ = run(strategy='u2r')
  kept = out.trajectory['kept']
  revoked = kept[:-1] & ~kept[1:]  # revoked[t]: kept after step t, masked after step t+1
  assert not revoked[:7].any()  # steps 1..7 use uniform: nothing revoked
  assert revoked[7:].any()
  out, _ = run(strategy='r2u')
  revoked = out.trajectory['kept'][:-1] & ~out.trajectory['kept'][1:]
  assert revoked[:7].any() and not revoked[7:].any()


def test_schedule_string(tiny_config):
  cfg = sampler_config(tiny_config.sampler, strategy='uniform:4,purity:12')
  assert strategy_per_step(cfg) == ['uniform'] * 4 + ['purity'] * 12
  with pytest.raises(ValueError, match='covers 5 steps'):
    strategy_per_step(sampler_config(tiny_config.sampler, strategy='uniform:5'))


def test_guidance_zero_is_the_conditional_path(run, tiny_model):
  # With scale 0 the unconditional branch must not matter: a different negative prompt changes nothing.
  _, models, _ = tiny_model
  negative = models.text_tokenizer.encode_batch(['a purple triangle'] * len(PROMPTS))
  a, _ = run(seed=6, guidance_scale=0.0, strategy='purity')
  b, _ = run(seed=6, guidance_scale=0.0, strategy='purity', negative=negative)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  c, _ = run(seed=6, guidance_scale=3.0, strategy='purity', negative=negative)
  assert (a.tokens != c.tokens).any()


def test_an_unguided_sampler_runs_the_conditional_rows_alone(tiny_model):
  # Guidance 0 at every step is c + 0 (c - u) = c: no forward runs on 2B rows, and the samples are those of the
  # same program made to run both halves. Whether a config guides is part of its program key.
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(PROMPTS)
  b, n = len(PROMPTS), models.num_tokens
  for strategy in ('uniform', 'tcts_fas'):
    cfg = sampler_config(config.sampler, strategy=strategy, guidance_scale=0.0, forward_rows=0)
    unguided, both_halves = make_sampler(models, cfg), make_sampler(models, cfg)
    both_halves.guided = True  # read when the program is traced, i.e. at the first call
    assert not unguided.guided
    jaxpr = jax.make_jaxpr(unguided._sample_impl)(*unguided.arguments(params, ids, jax.random.key(0)))
    shapes = [e.outvars[0].aval.shape for e in dot_generals(jaxpr.jaxpr)]
    assert not [s for s in shapes if s[0] == 2 * b and n in s[1:]], shapes
    for seed in (0, 1):
      np.testing.assert_array_equal(
        unguided(params, ids, jax.random.key(seed)).tokens, both_halves(params, ids, jax.random.key(seed)).tokens
      )
  assert program_key(cfg) != program_key(sampler_config(cfg, guidance_scale=3.0))
  with pytest.raises(ValueError, match="differ from the compiled sampler in \\['guided'\\]"):
    unguided.schedules_for(sampler_config(cfg, guidance_scale=3.0))


def test_guidance_on_the_features_is_guidance_on_the_logits_with_the_head_on_half_the_rows(tiny_model):
  config, models, params = tiny_model
  m = models.masked_generator()
  ids = models.text_tokenizer.encode_batch(PROMPTS)
  b, k = len(PROMPTS), models.generator.codebook_size
  canvas = np.where(np.arange(models.num_tokens) % 3 == 0, REFERENCE, models.mask_id)
  canvas = np.concatenate([canvas, canvas])
  text = m.encode_text(params, ids, None)
  logits = np.asarray(m.logits(params, canvas, text, None)[0])
  features = m.features(params, canvas, text, None)[0]
  np.testing.assert_allclose(m.head(params, features), logits, atol=1e-5)
  for g in (0.0, 1.0, 4.0):
    expected = guided_logits(logits[:b], logits[b:], g)
    guided = m.head(params, guided_features(features[:b], features[b:], jnp.float32(g)))
    np.testing.assert_allclose(guided, expected, atol=2e-5 * (1 + g))
  # The sampler takes that path: its one head matmul gives B rows of codebook logits, and it samples what the
  # logits path samples.
  cfg = sampler_config(config.sampler, strategy='purity')
  sampler = make_sampler(models, cfg)
  jaxpr = jax.make_jaxpr(sampler._sample_impl)(*sampler.arguments(params, ids, jax.random.key(0)))
  heads = [
    e.outvars[0].aval.shape for e in dot_generals(jaxpr.jaxpr) if e.outvars[0].aval.shape[1:] == (models.num_tokens, k)
  ]
  assert heads and all(shape[0] == b for shape in heads), heads
  on_logits = Sampler(dataclasses.replace(m, features=None, head=None), cfg, models.token_selector())
  assert sampler.guide_features and not on_logits.guide_features
  same = np.asarray(sampler(params, ids, jax.random.key(1)).tokens) == np.asarray(
    on_logits(params, ids, jax.random.key(1)).tokens
  )
  assert same.mean() > 0.9, same.mean()


def test_forwards_in_row_chunks_are_the_same_forwards(tiny_model):
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(PROMPTS)
  m, selector = models.masked_generator(), models.token_selector()
  # 3 rows at a time: the 2B = 8 rows of a guided forward make chunks of 3, 3 and a padded 2.
  chunked, chunked_selector = with_row_chunks(m, selector, 3)
  canvas = np.where(np.arange(models.num_tokens) % 3 == 0, REFERENCE, models.mask_id)
  canvas = np.concatenate([canvas, canvas])
  text = m.encode_text(params, ids, None)
  for forward in ('logits', 'features'):
    whole = getattr(m, forward)(params, canvas, text, config.sampler.fas_layer)
    parts = getattr(chunked, forward)(params, canvas, text, config.sampler.fas_layer)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), whole, parts)
  ratio = np.linspace(0.1, 0.9, 2 * len(PROMPTS)).astype(np.float32)
  selector_text = selector.encode_text(params, ids, None)
  np.testing.assert_allclose(
    selector.logits(params, canvas, ratio, selector_text),
    chunked_selector.logits(params, canvas, ratio, selector_text),
    atol=1e-5,
  )
  # The sampler with forward_rows samples what it samples without (tcts_fas: generator, maps and selector).
  cfg = sampler_config(config.sampler, strategy='tcts_fas', forward_rows=0)
  one = make_sampler(models, cfg)(params, ids, jax.random.key(2)).tokens
  rows = make_sampler(models, sampler_config(cfg, forward_rows=3))(params, ids, jax.random.key(2)).tokens
  assert (np.asarray(one) == np.asarray(rows)).mean() > 0.9
  with pytest.raises(ValueError, match='forward_rows must be an int >= 0'):
    make_sampler(models, sampler_config(cfg, forward_rows=-1))


def test_one_scan_with_static_length(tiny_model):
  config, models, params = tiny_model
  sampler = make_sampler(models, sampler_config(config.sampler, strategy='fas'))
  ids = models.text_tokenizer.encode_batch(PROMPTS[:2])
  jaxpr = jax.make_jaxpr(sampler._sample_impl)(*sampler.arguments(params, ids, jax.random.key(0)))
  scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == 'scan']
  assert len(scans) == 1 and scans[0].params['length'] == config.sampler.steps
  # No other loop primitive at top level, and none inside the scan other than what XLA needs.
  assert not [e for e in jaxpr.jaxpr.eqns if e.primitive.name == 'while']


def test_no_recompilation_across_prompts_and_seeds(tiny_model):
  config, models, params = tiny_model
  sampler = make_sampler(models, sampler_config(config.sampler, strategy='random_revoke', steps=4))
  for seed, prompts in enumerate([PROMPTS[:2], PROMPTS[2:]]):
    sampler(params, models.text_tokenizer.encode_batch(prompts), jax.random.key(seed))
  assert sampler._sample._cache_size() == 1


def test_per_step_settings_reuse_the_compiled_program_and_others_are_refused(tiny_model):
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(PROMPTS[:2])
  cfg = sampler_config(config.sampler, strategy='uniform', steps=4)
  sampler = make_sampler(models, cfg, strategies=('purity',))
  other = sampler_config(
    cfg, strategy='purity:2,uniform:2', guidance_scale=0.5, temperature=2.0, mask_schedule='linear'
  )
  swept = sampler(params, ids, jax.random.key(3), settings=other)
  own = make_sampler(models, other)(params, ids, jax.random.key(3))
  np.testing.assert_array_equal(np.asarray(swept.tokens), np.asarray(own.tokens))
  sampler(params, ids, jax.random.key(3))
  assert sampler._sample._cache_size() == 1
  with pytest.raises(ValueError, match=r"settings differ from the compiled sampler in \['top_k'\]"):
    sampler(params, ids, jax.random.key(0), settings=sampler_config(cfg, top_k=3))
  with pytest.raises(ValueError, match=r"not built for strategies \['random_revoke'\]"):
    sampler(params, ids, jax.random.key(0), settings=sampler_config(cfg, strategy='random_revoke'))
  with pytest.raises(ValueError, match='temperature must be > 0'):
    sampler(params, ids, jax.random.key(0), settings=sampler_config(cfg, temperature=0.0))


@pytest.mark.parametrize(
  'overrides, message',
  [
    (dict(strategy='nope'), 'unknown strategy'),
    (dict(strategy='fas', fas_base='nope'), 'unknown FAS base'),
    (dict(persistent_weight=0.0), 'persistent_weight must be > 0'),
    (dict(steps=0), 'steps must be in'),
    (dict(steps=65), 'steps must be in'),
    (dict(strategy='fas', fas_layer=7), 'fas_layer 7 out of range'),
    (dict(guidance_scale=-1.0), 'guidance_scale must be >= 0'),
    (dict(guidance_schedule='wobbly'), 'unknown guidance schedule'),
    (dict(mask_schedule='wobbly'), 'unknown mask schedule'),
    (dict(temperature=0.0), 'temperature must be > 0'),
    (dict(visible_tokens='freeze'), 'visible_tokens must be one of'),
    (dict(fas_map='value'), 'fas_map must be one of'),
    (dict(strategy='ivqd_purity', ivqd_purity_weight=-1.0), 'ivqd_purity_weight must be >= 0'),
    (dict(strategy='fas', fas_map='cross_attention', fas_cross_weight=-1.0), 'fas_cross_weight must be >= 0'),
  ],
)
def test_bad_settings_fail_before_compiling(tiny_model, overrides, message):
  config, models, _ = tiny_model
  with pytest.raises(ValueError, match=message):
    make_sampler(models, sampler_config(config.sampler, **overrides))


def test_keep_counts():
  for steps in [1, 2, 8, 16, 64]:
    k = schedules.keep_counts(steps, 64)
    assert len(k) == steps and k[-1] == 64 and k[0] >= 1
    assert (np.diff(k) >= 1).all()
  with pytest.raises(ValueError):
    schedules.keep_counts(65, 64)
  # A hold (ReMDM's loop): round((stop - start) T) steps keep the count, after the first round(start T) decoding
  # steps; the decoding steps are the schedule of T - L steps.
  decoding = schedules.keep_counts(6, 64)
  held = schedules.keep_counts(16, 64, hold=(0.25, 0.875))
  np.testing.assert_array_equal(held, np.concatenate([decoding[:4], np.full(10, decoding[3]), decoding[4:]]))
  for bad in [(0.5, 0.25), (0.0, 1.0), (-0.1, 0.5)]:
    with pytest.raises(ValueError, match='hold'):
      schedules.keep_counts(16, 64, hold=bad)


def test_schedules_stay_numpy_inside_a_jit_trace(tiny_model):
  # The generator stage builds a Sampler inside its jitted image summary: schedules must stay constants.
  config, models, _ = tiny_model
  outside = schedules.keep_counts(8, 64)

  def build(x):
    inside = schedules.keep_counts(8, 64)
    assert isinstance(inside, np.ndarray)
    np.testing.assert_array_equal(inside, outside)
    make_sampler(models, config.sampler)
    return x

  jax.jit(build)(0.0)


def test_guidance_schedules():
  np.testing.assert_allclose(schedules.guidance_scales(4, 2.0, 'constant'), [2, 2, 2, 2])
  lin = schedules.guidance_scales(4, 2.0, 'linear')
  np.testing.assert_allclose(lin, [0.5, 1.0, 1.5, 2.0])
  cos = schedules.guidance_scales(4, 2.0, 'cosine')
  assert (np.diff(cos) > 0).all() and np.isclose(cos[-1], 2.0)


@pytest.mark.parametrize('strategy', ['uniform', 'random_revoke', 'fas'])
def test_completion_never_changes_locked_tokens(tiny_model, strategy):
  # Inpainting: tokens outside the region are locked; the region is generated; counts follow the schedule.
  config, models, params = tiny_model
  sampler = make_sampler(models, sampler_config(config.sampler, strategy=strategy, steps=6), trajectory=True)
  ids = models.text_tokenizer.encode_batch(PROMPTS[:2])
  rng = np.random.default_rng(0)
  original = rng.integers(0, models.generator.codebook_size, (2, models.num_tokens))
  region = np.zeros((2, models.num_tokens), bool)
  region[0, 10:30], region[1, :50] = True, True
  init = np.where(region, models.mask_id, original)
  out = jax.tree.map(np.asarray, sampler(params, ids, jax.random.key(0), init_tokens=init, locked=~region))
  np.testing.assert_array_equal(out.tokens[~region], original[~region])
  assert (out.tokens != models.mask_id).all()
  kept = out.trajectory['kept'].sum(-1)  # (T, B)
  assert (np.diff(kept, axis=0) >= 0).all() and (kept[-1] == models.num_tokens).all()
  assert (kept[0] >= (~region).sum(-1)).all()
  with pytest.raises(ValueError, match='locked positions must hold tokens'):
    sampler(params, ids, jax.random.key(0), init_tokens=init, locked=np.ones_like(region))


def test_bfloat16_compute_runs_every_matmul_in_bfloat16_and_samples_from_float32_logits(tiny_model):
  config, models, params = tiny_model
  ids = models.text_tokenizer.encode_batch(PROMPTS)
  for dtype in ('float32', 'bfloat16'):  # generator, text encoder and selector (tcts_fas uses all three)
    sampler = make_sampler(models, sampler_config(config.sampler, strategy='tcts_fas', compute_dtype=dtype))
    jaxpr = jax.make_jaxpr(sampler._sample_impl)(*sampler.arguments(params, ids, jax.random.key(0)))
    assert dot_operand_dtypes(jaxpr.jaxpr) == {(dtype, dtype)}
  out = sampler(params, ids, jax.random.key(0))
  assert (np.asarray(out.tokens) != models.mask_id).all() and out.images.dtype == np.float32
  # The bfloat16 forward gives the float32 forward's logits to bfloat16 precision.
  m = models.masked_generator()
  canvas = np.where(np.arange(models.num_tokens) % 3 == 0, REFERENCE, models.mask_id)
  canvas = np.concatenate([canvas, canvas])
  exact = m.logits(params, canvas, m.encode_text(params, ids, None), None)[0]
  half = cast_floating(params, jnp.bfloat16)
  rounded = as_float32(m.logits(half, canvas, m.encode_text(half, ids, None), None)[0])
  assert rounded.dtype == np.float32
  error = np.abs(np.asarray(rounded) - np.asarray(exact)).max() / np.asarray(exact).std()
  assert 0 < error < 0.1, error
  with pytest.raises(ValueError, match="compute_dtype must be one of \\['bfloat16', 'float32'\\], got 'float16'"):
    make_sampler(models, sampler_config(config.sampler, compute_dtype='float16'))
