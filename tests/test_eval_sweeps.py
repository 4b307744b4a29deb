"""The eval job's sweeps and diagnostics (tcts_jax/evaluation/): grid entries with sampler settings of their own,
the held-out split, per-step sampling diagnostics stored and reported, repair / break rates from the evaluators'
`transitions` hook, oracle rows fed the reference tokens of their captions' real images; and the diagnostics
under the sample command's trajectory strips."""

import types

import jax
import numpy as np
import pytest

from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error
from tests.test_evaluate import eval_args

N = 64  # tokens of the tiny model's images
GRID = ('random_revoke@4[visible_tokens=redraw]', 'oracle@4')


def eval_config(data_dir, **overrides):
  from tcts_jax.utils.config import load_config

  config = load_config('configs/shapes.py:eval,smoke,tiny')
  with config.unlocked():
    config.data.data_dir = str(data_dir)
    config.eval.update(
      grid=GRID,
      num_images=8,
      batch_size=4,
      shard_size=4,
      split='validation',
      # Written with spaces: the job names the row without them.
      compare=(('random_revoke@4[ visible_tokens = redraw ]', 'oracle@4'),),
      metrics=('alignment',),
      reference_rows=False,
      bootstrap=50,
    )
    config.eval.update(overrides)
    config.eval.refinement.base = None
  return config


@pytest.fixture(scope='module')
def sweep_run(tmp_path_factory, tiny_weights, tiny_data_dir):
  """An in-process eval of two rows (one with sampler settings of its own, one oracle) on the validation split."""
  from tcts_jax.evaluation.job import run_eval

  workdir = tmp_path_factory.mktemp('sweep') / 'run'
  results = run_eval(eval_config(tiny_data_dir), workdir, str(tiny_weights))
  return workdir, results


# ------------------------------------------------------------------------------------------------ grid entries


def test_grid_entries_with_sampler_settings():
  from tcts_jax.evaluation.grid import Entry, normalise_name, parse_comparisons, parse_grid

  entries = parse_grid(
    ['random_revoke@16[visible_tokens=redraw]', ' tcts_fas@8[ top_p = 0.86 , mask_schedule=linear ]', 'purity@16']
  )
  assert entries[0] == Entry('random_revoke', 16, (('visible_tokens', 'redraw'),))
  assert [e.name for e in entries] == [
    'random_revoke@16[visible_tokens=redraw]',
    'tcts_fas@8[top_p=0.86,mask_schedule=linear]',
    'purity@16',
  ]
  assert entries[1].settings == {'top_p': 0.86, 'mask_schedule': 'linear'} and entries[2].settings == {}
  assert entries[0].dirname == 'random_revoke@16_visible_tokens_redraw_'
  values = parse_grid(['a@4[top_k=3,top_p=1e-1,freeze=True,off=false,name=x1,quoted="3"]'])[0].settings
  assert values == {'top_k': 3, 'top_p': 0.1, 'freeze': True, 'off': False, 'name': 'x1', 'quoted': '3'}
  assert [type(v) for v in values.values()] == [int, float, bool, bool, str, str]
  # The name as written (spacing aside), in compare pairs too; other row names are kept.
  assert parse_grid(['a@4[top_p=0.90]'])[0].name == 'a@4[top_p=0.90]'
  assert normalise_name('uniform@16 + revision (random)') == 'uniform@16 + revision (random)'
  assert parse_comparisons([('a@4[ x = 1 ]', 'a@4')]) == [('a@4[x=1]', 'a@4')]
  bad = {
    'a@4[x]': 'expected key=value',
    'a@4[=1]': 'expected key=value',
    'a@4[x=]': 'expected key=value',
    'a@4[x=1': 'one [key=value,...] at the end',
    'a@4[x=1][y=2]': 'one [key=value,...] at the end',
    'a@4[]': 'one [key=value,...] at the end',
    'a@4x[y=1]': 'strategy@steps',
    'a@4[steps=8]': 'steps is set by',
    'a@4[x=1,x=2]': 'sets x twice',
  }
  for entry, message in bad.items():
    with pytest.raises(ValueError, match=message.replace('[', r'\[')):
      parse_grid([entry])
  with pytest.raises(ValueError, match='run the same sampler'):
    parse_grid(['a@4[x=1,y=2]', 'a@4[y=2,x=1.0]'])
  with pytest.raises(ValueError, match='duplicate'):
    parse_grid(['a@4[x=1]', 'a@4[ x=1 ]'])


def test_entry_settings_are_checked_against_the_sampler(tiny_config):
  from tcts_jax.data import shapes
  from tcts_jax.evaluation.grid import parse_entry
  from tcts_jax.evaluation.job import entry_sampler
  from tcts_jax.models import build_models

  config, models = tiny_config, build_models(tiny_config, shapes.vocabulary())  # no parameters: nothing is run
  t2i = types.SimpleNamespace(config=config, model=models.masked_generator(), selector=models.token_selector())
  sampler = entry_sampler(t2i, parse_entry('random_revoke@4[visible_tokens=redraw,top_p=1,temperature=2]'))
  assert sampler.diagnostics and (sampler.cfg.visible_tokens, sampler.cfg.steps) == ('redraw', 4)
  assert sampler.cfg.top_p == 1.0 and isinstance(sampler.cfg.top_p, float) and sampler.cfg.temperature == 2.0
  bad = {
    'uniform@4[nope=1]': "unknown sampler setting 'nope'",
    'uniform@4[top_p=high]': "sampler setting top_p: 'high' is not of type float",
    'uniform@4[top_k=0.5]': 'sampler setting top_k: 0.5 is not of type int',
    'uniform@4[top_k=True]': 'sampler setting top_k: True is not of type int',
    'uniform@4[mask_schedule=nope]': 'nope',
  }
  for entry, message in bad.items():
    with pytest.raises(ValueError, match=message) as e:
      entry_sampler(t2i, parse_entry(entry))
    assert str(e.value).startswith(f"eval.grid entry '{entry}': ") and '\n' not in str(e.value)


def test_a_sweep_grid_parses_from_the_command_line(tiny_weights, tiny_data_dir, tmp_path):
  # A tuple of entries with brackets, commas and '=' is read from the command line: the bad one is named as
  # written, in one line, before anything is generated.
  grid = "('random_revoke@8[visible_tokens=redraw]', 'uniform@8[top_p=0.9,nope=1]')"
  r = run_cli(
    'tcts_jax.evaluate', *eval_args(tiny_weights, tiny_data_dir, tmp_path / 'run', f'--config.eval.grid={grid}')
  )
  assert_one_line_error(r, "'uniform@8[top_p=0.9,nope=1]'", "unknown sampler setting 'nope'")
  assert not (tmp_path / 'run').exists()


def test_an_unknown_split_fails_before_loading(tiny_data_dir, tmp_path):
  from tcts_jax.evaluation.job import run_eval

  with pytest.raises(ValueError, match="eval.split 'nope': dataset captioned_shapes/tiny has the splits train, test"):
    run_eval(eval_config(tiny_data_dir, split='nope'), tmp_path / 'run', str(tmp_path / 'no_weights'))
  assert not (tmp_path / 'run').exists()


# --------------------------------------------------------------------------------------- diagnostics, transitions


def test_diagnostics_summary_leaves_out_steps_without_visible_tokens():
  from tcts_jax.evaluation.diagnostics import summarise

  # Two images of 4 tokens in 3 steps. Image 0 revokes 1 token at step 1 and churns; image 1 never revokes.
  d = {
    'decided': np.array([[2, 2, 1], [1, 1, 2]], np.float32),
    'revoked': np.array([[0, 1, 0], [0, 0, 0]], np.float32),
    'churn': np.array([[0.0, 1.0, 0.5], [0.0, 0.0, 0.0]], np.float32),
    'entropy_masked': np.array([[2.0, 1.0, 0.5], [2.0, 1.5, 1.0]], np.float32),
    'entropy_visible': np.array([[0.0, 1.0, 0.4], [0.0, 0.8, 0.2]], np.float32),
  }
  out = summarise(d)
  steps, summary = out['per_step'], out['summary']
  assert steps['decided'] == [1.5, 1.5, 1.5] and steps['revoked'] == [0.0, 0.5, 0.0]
  # Step 0 has no visible token (None, not 0); at step 1 image 0 keeps 1 of its 2 visible tokens, image 1 its 1.
  assert steps['churn'] == pytest.approx([None, 0.5, 0.25]) and steps['churn'][0] is None
  assert steps['entropy_visible'][0] is None and steps['entropy_visible'][1:] == pytest.approx([0.9, 0.3])
  assert steps['entropy_masked'] == pytest.approx([2.0, 1.25, 0.75])
  assert summary['churn'] == pytest.approx(0.375) and summary['entropy_visible'] == pytest.approx(0.6)
  # Every image ends fully kept: decided - revoked = N per image.
  assert summary['decided_per_image'] - summary['revoked_per_image'] == 4
  assert summary['revoked_per_image'] == 0.5
  # Tokens that stayed kept with another value: image 0: 1.0 x 1 (step 1) + 0.5 x 3 (step 2) = 2.5; image 1: 0.
  assert summary['changed_per_image'] == pytest.approx(1.25)


def synthetic_transitions():
  """Captions of 3 objects; midpoint and final images drawn from their scenes with some objects recoloured."""
  from tcts_jax.data import HeldOut, shapes
  from tcts_jax.data.captioned_shapes import AlignmentEvaluator, rerender
  from tcts_jax.evaluation.evaluators import EvalContext

  examples = [e for e in (shapes.make_example(3, i) for i in range(40)) if e['num_objects'] == 3][:3]
  objects = np.stack([e['objects'] for e in examples])
  held_out = HeldOut(
    [e['caption'] for e in examples],
    np.stack([e['image'] for e in examples]),
    {'objects': objects, 'num_objects': np.array([3, 3, 3])},
  )

  def drawn(i, wrong):  # example i's scene with the objects `wrong` in another colour
    o = objects[i].copy()
    o[list(wrong), 1] = (o[list(wrong), 1] + 1) % len(shapes.PALETTE)
    return rerender(o, 3, 0, i, 32)

  # image 0: object 0 wrong at midpoint, repaired; object 1 right at midpoint, broken.
  # image 1: objects 0 and 2 wrong at midpoint, both still wrong; nothing broken.
  # image 2: everything right throughout.
  mid = np.stack([drawn(0, [0]), drawn(1, [0, 2]), drawn(2, [])])
  end = np.stack([drawn(0, [1]), drawn(1, [0, 2]), drawn(2, [])])
  evaluator = AlignmentEvaluator(EvalContext(None, None, held_out))
  return evaluator, mid, end


def test_alignment_transitions_count_repaired_and_broken_objects():
  from tcts_jax.evaluation.evaluators import Evaluator, transition_rates

  evaluator, mid, end = synthetic_transitions()
  example = np.arange(3)
  scores = evaluator.per_image(end, example)
  assert scores['object_accuracy'].tolist() == [2 / 3, 1 / 3, 1.0]
  t = evaluator.transitions(mid, end, example)
  assert {k: v.tolist() for k, v in t.items()} == {
    'wrong_mid': [1, 2, 0],
    'repaired': [1, 0, 0],
    'right_mid': [2, 1, 3],
    'broken': [1, 0, 0],
  }
  # Repair rate = Σ repaired / Σ wrong at midpoint; break rate = Σ broken / Σ right at midpoint.
  assert transition_rates(t) == pytest.approx({'repair_rate': 1 / 3, 'break_rate': 1 / 6})
  # Swapping midpoint and end swaps the roles: what was repaired is broken.
  back = evaluator.transitions(end, mid, example)
  assert back['repaired'].tolist() == [1, 0, 0] and back['broken'].tolist() == [1, 0, 0]
  assert back['wrong_mid'].tolist() == [1, 2, 0]
  # Nothing to repair: undefined, not 0. Resampled: one rate per resample.
  assert np.isnan(transition_rates(t, np.array([2, 2, 2]))['repair_rate'])
  assert transition_rates(t, np.array([[0, 0, 1], [2, 2, 2]]))['break_rate'] == pytest.approx([2 / 5, 0.0])
  assert Evaluator(None).transitions(mid, end, example) is None  # the default: not supported


def test_transition_summary_intervals_and_paired_difference():
  from tcts_jax.evaluation.diagnostics import transition_summary
  from tcts_jax.evaluation.evaluators import transition_rates
  from tcts_jax.evaluation.stats import paired_difference

  rng = np.random.default_rng(0)
  n = 300
  wrong = rng.integers(0, 3, n).astype(float)
  a = {'wrong_mid': wrong, 'repaired': np.minimum(wrong, rng.integers(0, 2, n)), 'right_mid': 3 - wrong}
  a['broken'] = np.zeros(n)
  b = dict(a, repaired=np.zeros(n))  # B repairs nothing
  s = transition_summary(a, 500, seed=0)
  assert s['counts'] == {k: int(v.sum()) for k, v in a.items()}
  r = s['repair_rate']
  assert r['value'] == pytest.approx(a['repaired'].sum() / wrong.sum()) and r['ci95'][0] < r['value'] < r['ci95'][1]
  assert s['break_rate'] == {'value': 0.0, 'ci95': [0.0, 0.0]}
  d = paired_difference(transition_rates, a, b, 500, seed=0)['repair_rate']
  assert d['value'] == pytest.approx(r['value']) and 0 < d['ci95'][0] <= d['value']
  assert transition_summary(dict(a, wrong_mid=np.zeros(n), repaired=np.zeros(n)), 50, 0)['repair_rate'] == {
    'value': None
  }


# ----------------------------------------------------------------------------------------------------- oracles


class EchoSampler:
  """A stand-in oracle sampler: tokens = its reference tokens + the caption's first id, diagnostics from its rng."""

  needs_reference, diagnostics = True, True

  def __init__(self, steps):
    self.cfg = types.SimpleNamespace(steps=steps)
    self.model = types.SimpleNamespace(num_tokens=N)

  def __call__(self, params, text_ids, rng, reference_tokens=None):
    from tcts_jax.sampling.sampler import SampleOutput

    del params
    tokens = reference_tokens + text_ids[:, :1]
    noise = jax.random.uniform(rng, (self.cfg.steps, 1))
    diagnostics = {k: noise for k in ('decided', 'revoked', 'churn', 'entropy_masked', 'entropy_visible')}
    return SampleOutput(tokens, jax.numpy.zeros((1, 4, 4, 3)), diagnostics=dict(diagnostics, midpoint_tokens=tokens))


def test_oracle_rows_get_each_images_reference_tokens_whatever_the_batch():
  from jax.sharding import Mesh

  from tcts_jax.evaluation.generation import ShardGenerator, per_image_arrays

  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  rng = np.random.default_rng(0)
  indices, text_ids = np.arange(10, 17), rng.integers(0, 50, (7, 5)).astype(np.int32)
  reference = rng.integers(0, 1000, (7, N)).astype(np.int32)
  outs = [ShardGenerator(EchoSampler(3), mesh, {}, 5, batch, 0)(indices, text_ids, reference) for batch in (3, 8)]
  for out in outs:
    np.testing.assert_array_equal(out['tokens'], reference + text_ids[:, :1])
    np.testing.assert_array_equal(out['midpoint_tokens'], out['tokens'])
    assert {k: v.shape[1:] for k, v in out.items() if k in per_image_arrays(EchoSampler(3))} == per_image_arrays(
      EchoSampler(3)
    )
  for key in per_image_arrays(EchoSampler(3)):
    np.testing.assert_array_equal(outs[0][key], outs[1][key])  # per-image rng and reference: batch-independent
  assert not np.array_equal(outs[0]['diagnostics/churn'][0], outs[0]['diagnostics/churn'][1])
  with pytest.raises(ValueError, match='needs reference_tokens'):
    ShardGenerator(EchoSampler(3), mesh, {}, 5, 4, 0)(indices, text_ids)


# ------------------------------------------------------------------------------------------------ the job, end to end


def test_rows_report_their_diagnostics_on_the_chosen_split(sweep_run, tiny_data_dir):
  from tcts_jax.data import get_dataset

  workdir, results = sweep_run
  assert results['split'] == 'validation' and results['manifest']['split'] == 'validation'
  rows = {row['name']: row for row in results['rows']}
  assert list(rows) == list(GRID)
  assert rows['random_revoke@4[visible_tokens=redraw]']['settings'] == {'visible_tokens': 'redraw'}
  for row in rows.values():
    d = row['diagnostics']
    assert {k: len(v) for k, v in d['per_step'].items()} == dict.fromkeys(
      ('decided', 'revoked', 'churn', 'entropy_masked', 'entropy_visible'), 4
    )
    assert d['summary']['decided_per_image'] - d['summary']['revoked_per_image'] == pytest.approx(N)
    assert d['per_step']['churn'][0] is None  # nothing visible before the first step
  assert rows['random_revoke@4[visible_tokens=redraw]']['diagnostics']['summary']['churn'] > 0
  assert rows['oracle@4']['diagnostics']['summary']['churn'] == 0  # visible tokens kept: they never change
  # Transitions judge every object of each image's caption, once: the validation split's captions.
  per_image = np.load(workdir / 'per_image' / 'oracle@4.npz')
  judged = per_image['transitions/alignment/wrong_mid'] + per_image['transitions/alignment/right_mid']
  dataset = get_dataset(eval_config(tiny_data_dir).data)
  counts = {split: dataset.held_out(split, 8).fields['num_objects'] for split in ('validation', 'test')}
  assert judged.tolist() == counts['validation'].tolist() != counts['test'].tolist()
  assert per_image['diagnostics/churn'].shape == (8, 4)
  summary = rows['oracle@4']['diagnostics']['transitions']['alignment']
  assert summary['counts']['wrong_mid'] + summary['counts']['right_mid'] == counts['validation'].sum()
  [comparison] = results['comparisons']
  assert (comparison['a'], comparison['b']) == ('random_revoke@4[visible_tokens=redraw]', 'oracle@4')
  assert set(comparison['transitions']['alignment']) == {'repair_rate', 'break_rate'}
  md = (workdir / 'results.md').read_text()
  assert '8 images per row, validation split' in md and '## Sampling diagnostics' in md
  table = md.split('## Sampling diagnostics')[1]
  assert all(f'| {name} |' in table for name in GRID) and '| churn | revoked / image |' in table


def test_shards_keep_a_rows_arrays_and_recompute_those_made_without_them(tmp_path, capsys):
  """A shard lacking an array the row now needs (made before diagnostics) is recomputed with a warning, a
  complete one is kept; the row gets every shard's arrays."""
  from tcts_jax.evaluation.shards import ShardStore

  def compute(indices):
    calls.append(indices.tolist())
    return {
      'tokens': np.tile(indices[:, None], (1, 4)),
      'images': np.zeros((len(indices), 8, 8, 3), np.uint8),
      'diagnostics/churn': indices[:, None] * np.ones((1, 3), np.float32),
      'seconds': 1.0,
      'slots': 2,
    }

  store, arrays = ShardStore(tmp_path, 4, 2, 4, 8), {'diagnostics/churn': (3,)}
  calls = []
  first = store.collect('row', lambda indices: 'fp', compute, arrays)
  assert calls == [[0, 1], [2, 3]] and first['diagnostics/churn'][:, 0].tolist() == [0, 1, 2, 3]
  old = tmp_path / 'shards' / 'row' / 'shard_00001.npz'
  with np.load(old) as f:
    np.savez(old, **{k: f[k] for k in f.files if k != 'diagnostics/churn'})
  calls.clear()
  capsys.readouterr()
  again = store.collect('row', lambda indices: 'fp', compute, arrays)
  assert calls == [[2, 3]] and "missing or misshaped 'diagnostics/churn'; recomputing" in capsys.readouterr().err
  for key in ('tokens', 'diagnostics/churn'):
    np.testing.assert_array_equal(again[key], first[key])


# ---------------------------------------------------------------------------------------------- trajectory strips


def test_trajectory_strip_writes_each_steps_diagnostics_under_its_column():
  from tcts_jax.utils.visualize import trajectory_strip

  rng = np.random.default_rng(0)
  t, scale = 4, 3
  images, kept, high = rng.random((t, 32, 32, 3)), rng.random((t, 64)) < 0.5, rng.random((t, 64)) < 0.5
  steps = {'decided': np.array([5, 20, 25, 14]), 'revoked': np.array([0, 3, 2, 0]), 'churn': np.array([0, 0.5, 0.2, 0])}
  plain = trajectory_strip(images, kept, high, 8, 'a red circle', scale)
  strip = trajectory_strip(images, kept, high, 8, 'a red circle', scale, diagnostics=steps)
  assert strip.shape[1] == plain.shape[1] and strip.shape[0] > plain.shape[0]
  np.testing.assert_array_equal(strip[30 : plain.shape[0]], plain[30:])  # the rows themselves are unchanged
  other = trajectory_strip(
    images, kept, high, 8, 'a red circle', scale, diagnostics=dict(steps, revoked=np.array([0, 3, 7, 0]))
  )
  column = 32 * scale
  differs = [
    not np.array_equal(
      other[plain.shape[0] :, i * column : (i + 1) * column], strip[plain.shape[0] :, i * column : (i + 1) * column]
    )
    for i in range(t)
  ]
  assert differs == [False, False, True, False]  # only step 3's numbers changed
  footer = strip[plain.shape[0] :]
  assert all((footer[:, i * column : (i + 1) * column] < 128).any() for i in range(t))  # every step has its text
