"""The eval job (tcts_jax.evaluate, tcts_jax/evaluation/) and FID-shapes: end to end on the tiny model, resume,
sharding; evaluators found by name, a metric of one's own added by one module."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli, run_cli_processes, xla_flags

SMOKE = '--config=configs/shapes.py:eval,smoke,tiny'
CLIP_DIR = REPO / 'tests' / 'fixtures' / 'tiny_clip'


def eval_args(tiny_weights, tiny_data_dir, workdir, *extra):
  return [SMOKE, f'--workdir={workdir}', f'--weights={tiny_weights}', f'--config.data.data_dir={tiny_data_dir}', *extra]


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory, tiny_weights, tiny_data_dir, tiny_features):
  """The smoke eval with every metric (FID-shapes on the tiny features, CLIP-S/MID on the tiny CLIP)."""
  workdir = tmp_path_factory.mktemp('eval') / 'run'
  r = run_cli(
    'tcts_jax.evaluate',
    *eval_args(
      tiny_weights,
      tiny_data_dir,
      workdir,
      f'--config.eval.features_weights={tiny_features}',
      f'--config.eval.clip_weights={CLIP_DIR}',
    ),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r


def shard_files(workdir):
  return sorted((workdir / 'shards').glob('*/shard_*.npz'))


def without_timing(results):
  return [
    {k: v for k, v in row.items() if k not in ('seconds_per_image', 'compile_seconds')} for row in results['rows']
  ]


def test_smoke_writes_results(smoke_run):
  workdir, r = smoke_run
  results = json.loads((workdir / 'results.json').read_text())
  names = [row['name'] for row in results['rows']]
  assert names == [
    'purity@8',
    'uniform@8',
    'random_revoke@8',
    'uniform@8 + revision (random)',
    'real (re-rendered)',
    'VQ reconstruction',
  ]
  assert results['metrics'] == ['alignment', 'fid_shapes', 'clip_score', 'mid', 'inception_fid']
  assert list(results['unavailable']) == ['inception_fid']  # no Inception weights here: reported, not faked
  for row in results['rows']:
    m = row['metrics']
    a = m['object_accuracy']
    assert 0 <= a['ci95'][0] <= a['value'] <= a['ci95'][1] <= 1
    assert m['fid_shapes']['value'] >= -1e-6 and m['clip_score']['value'] is not None and m['mid'] is not None
    assert m['inception_fid'] is None
  generated = [row for row in results['rows'] if row['kind'] == 'generated']
  assert all(row['seconds_per_image'] > 0 for row in generated)
  real = next(row for row in results['rows'] if row['kind'] == 'real')
  assert real['metrics']['all_correct']['value'] >= 0.98  # re-rendered scenes are exact
  # 24 images in shards of 8, for each of the three grid entries and the refinement of uniform@8.
  assert [f.relative_to(workdir / 'shards').as_posix() for f in shard_files(workdir)] == [
    f'{e}/shard_{i:05d}.npz'
    for e in ('purity@8', 'random_revoke@8', 'refine_revision_random', 'uniform@8')
    for i in range(3)
  ]
  md = (workdir / 'results.md').read_text()
  assert 'FID-shapes' in md and 'NOT Inception FID' in md and all(f'| {n} |' in md for n in names)
  assert 'inception_fid skipped: eval.inception_weights is not set' in md
  # The smoke config's one eval.compare pair: purity@8 - random_revoke@8, paired over the same images.
  [comparison] = results['comparisons']
  rows = {row['name']: row['metrics'] for row in results['rows']}
  assert (comparison['a'], comparison['b']) == ('purity@8', 'random_revoke@8')
  assert {'object_accuracy', 'all_correct', 'clip_score'} <= set(comparison['difference'])
  for key, d in comparison['difference'].items():
    assert d['value'] == pytest.approx(rows['purity@8'][key]['value'] - rows['random_revoke@8'][key]['value'])
    assert d['ci95'][0] <= d['value'] <= d['ci95'][1]
  assert '## Paired differences' in md and '| purity@8 | random_revoke@8 |' in md
  png = np.asarray(Image.open(workdir / 'tradeoff.png'))
  assert png.ndim == 3 and png.shape[0] > 200
  assert 'eval shards' in r.stderr  # the progress bar
  # Per-image values of every row, keyed evaluator/key, with the record each image was made for.
  per_image = np.load(workdir / 'per_image' / 'purity@8.npz')
  assert per_image['example'].tolist() == [i % 24 for i in range(24)]
  assert per_image['alignment/object_accuracy'].shape == (24,) and 'clip_score/clip_score' in per_image.files


def test_manifest_says_how_the_result_was_made(smoke_run, tiny_weights):
  workdir, _ = smoke_run
  m = json.loads((workdir / 'results.json').read_text())['manifest']
  assert m['config']['eval']['grid'] == ['purity@8', 'uniform@8', 'random_revoke@8']
  assert m['config']['sampler']['strategy'] == 'purity' and m['seeds']['eval'] == 0
  assert set(m['weights_files']) == {'tokenizer.safetensors', 'text.safetensors', 'generator.safetensors', 'vocab.json'}
  assert all(len(h) == 64 for h in m['weights_files'].values())
  assert m['text_encoder'] == m['params']['text'] and set(m['params']) == {'tokenizer', 'text', 'generator'}
  assert m['devices']['count'] == 1
  assert m['code']['commit'] is None or len(m['code']['commit']) == 40


def test_refinement_changes_at_most_the_remasked_budget(smoke_run):
  # Revision refinement (2 rounds x 25% of 64 tokens) of uniform@8: the same images, and at most 2 x 16 tokens
  # of each differ from the base (locked tokens never change); some do change.
  workdir, _ = smoke_run
  for i in range(3):
    base = np.load(workdir / 'shards' / 'uniform@8' / f'shard_{i:05d}.npz')
    refined = np.load(workdir / 'shards' / 'refine_revision_random' / f'shard_{i:05d}.npz')
    np.testing.assert_array_equal(refined['indices'], base['indices'])
    changed = (refined['tokens'] != base['tokens']).sum(-1)
    assert changed.max() <= 2 * 16 and changed.sum() > 0


def test_resume_skips_finished_and_recomputes_missing_or_corrupt(
  smoke_run, tiny_weights, tiny_data_dir, tiny_features, tmp_path
):
  original, _ = smoke_run
  workdir = tmp_path / 'run'
  shutil.copytree(original, workdir)
  files = shard_files(workdir)
  before = {f: np.load(f)['tokens'] for f in files}
  missing, corrupt = files[1], files[4]
  missing.unlink()
  corrupt.write_bytes(corrupt.read_bytes()[:300])
  untouched = {f: f.stat().st_mtime_ns for f in files if f not in (missing, corrupt)}
  r = run_cli(
    'tcts_jax.evaluate',
    *eval_args(
      tiny_weights,
      tiny_data_dir,
      workdir,
      f'--config.eval.features_weights={tiny_features}',
      f'--config.eval.clip_weights={CLIP_DIR}',
    ),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  warnings = [l for l in r.stderr.splitlines() if 'warning:' in l]
  assert len(warnings) == 1 and corrupt.name in warnings[0] and 'recomputing' in warnings[0], r.stderr[-2000:]
  assert {f: f.stat().st_mtime_ns for f in untouched} == untouched  # finished shards were not rewritten
  for f in files:
    np.testing.assert_array_equal(np.load(f)['tokens'], before[f])
  old, new = (json.loads((d / 'results.json').read_text()) for d in (original, workdir))
  assert without_timing(new) == without_timing(old)


def test_more_images_keep_the_shards_already_made(smoke_run, tiny_weights, tiny_data_dir, tmp_path):
  """Raising num_images (24 -> 32) makes only the new shards, of a generated row and of a refinement of it:
  a shard's fingerprint covers its own captions, not the whole held-out list."""
  original, _ = smoke_run
  workdir = tmp_path / 'more'
  shutil.copytree(original, workdir)
  rows = ('uniform@8', 'refine_revision_random')
  made = {f: f.stat().st_mtime_ns for row in rows for f in (workdir / 'shards' / row).glob('*.npz')}
  assert len(made) == 6
  r = run_cli(
    'tcts_jax.evaluate',
    *eval_args(
      tiny_weights,
      tiny_data_dir,
      workdir,
      "--config.eval.grid=('uniform@8',)",
      '--config.eval.num_images=32',
      '--config.eval.reference_rows=False',
    ),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'warning:' not in r.stderr, r.stderr[-2000:]
  assert {f: f.stat().st_mtime_ns for f in made} == made  # the 24 images' shards were not rewritten
  for row in rows:
    assert max(f.name for f in (workdir / 'shards' / row).glob('*.npz')) == 'shard_00003.npz'
  assert json.loads((workdir / 'results.json').read_text())['num_images'] == 32


def test_sharded_generation_matches_one_device(smoke_run, tiny_weights, tiny_data_dir, tmp_path):
  """8 host devices (per-device batch 1) give the tokens of the 1-device run; also: no features weights and
  an entry needing a selector are skipped with a note."""
  original, _ = smoke_run
  workdir = tmp_path / 'run8'
  r = run_cli(
    'tcts_jax.evaluate',
    *eval_args(
      tiny_weights,
      tiny_data_dir,
      workdir,
      "--config.eval.grid=('random_revoke@8', 'tcts@8')",
      '--config.eval.reference_rows=False',
      '--config.eval.refinement.base=',
    ),
    env={'XLA_FLAGS': xla_flags('--xla_force_host_platform_device_count=8')},
  )
  assert r.returncode == 0, r.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert results['devices'].startswith('8 x')
  assert [row['name'] for row in results['rows']] == ['random_revoke@8']
  notes = ' '.join(results['notes'])
  assert 'skipped tcts@8' in notes and 'fid_shapes skipped' in notes and 'clip_score skipped' in notes
  assert 'mid skipped: eval.clip_weights is not set' in notes
  assert results['rows'][0]['metrics']['fid_shapes'] is None
  files = sorted((workdir / 'shards' / 'random_revoke@8').glob('*.npz'))
  assert len(files) == 3
  for f in files:
    one, eight = np.load(original / 'shards' / 'random_revoke@8' / f.name), np.load(f)
    np.testing.assert_array_equal(eight['tokens'], one['tokens'])
    # Decoding convolves batches of another size: pixels may differ by a rounding step, no more.
    assert np.abs(eight['images'].astype(int) - one['images'].astype(int)).max() <= 1


def test_two_processes_generate_the_tokens_of_one(smoke_run, tiny_weights, tiny_data_dir, tmp_path):
  """The eval job on 2 local processes of 4 host devices each (a coordinator on 127.0.0.1): every batch is
  split over the 8 devices of both, process 0 alone writes shards, results and the table, and the tokens are
  those of the 1-process run."""
  original, _ = smoke_run
  workdir = tmp_path / 'run2'
  extra = ["--config.eval.grid=('random_revoke@8',)", '--config.eval.reference_rows=False']
  runs = run_cli_processes(
    'tcts_jax.evaluate', *eval_args(tiny_weights, tiny_data_dir, workdir, *extra, '--config.eval.refinement.base=')
  )
  for r in runs:
    assert r.returncode == 0, r.stderr[-3000:]
  assert '| random_revoke@8 |' in runs[0].stdout and '| random_revoke@8 |' not in runs[1].stdout
  results = json.loads((workdir / 'results.json').read_text())
  assert results['devices'].startswith('8 x') and results['manifest']['devices']['processes'] == 2
  files = sorted((workdir / 'shards' / 'random_revoke@8').glob('*.npz'))
  assert len(files) == 3
  for f in files:
    np.testing.assert_array_equal(
      np.load(f)['tokens'], np.load(original / 'shards' / 'random_revoke@8' / f.name)['tokens']
    )


# ------------------------------------------------------------------------------------- in-process units


def test_parse_grid():
  from tcts_jax.evaluation.grid import Entry, parse_grid

  assert parse_grid(['purity@16', ('uniform', 25), 'uniform:4,random_revoke:4@8']) == [
    Entry('purity', 16),
    Entry('uniform', 25),
    Entry('uniform:4,random_revoke:4', 8),
  ]
  assert Entry('uniform:4,random_revoke:4', 8).dirname == 'uniform_4_random_revoke_4@8'
  for bad in (['purity'], ['purity@x'], [('purity',)], [], ['a@1', 'a@1']):
    with pytest.raises(ValueError):
      parse_grid(bad)


def alignment_scores(n=12):
  """Per-image alignment values of renders scored half against their own, half against other captions."""
  from tcts_jax.data import shapes
  from tcts_jax.data import shapes_alignment as alignment
  from tcts_jax.data.captioned_shapes import SCORE_KEYS

  examples = [shapes.make_example(3, i) for i in range(n)]
  images = np.stack([e['image'] for e in examples])
  objects = np.roll(np.stack([e['objects'] for e in examples]), 1, 0)  # half wrong: non-trivial means
  counts = np.roll(np.array([e['num_objects'] for e in examples]), 1)
  objects[::2], counts[::2] = (
    np.stack([e['objects'] for e in examples])[::2],
    np.array([e['num_objects'] for e in examples])[::2],
  )
  batch = alignment.score_batch(images, objects, counts)
  return batch, {k: batch['per_image'][k].astype(float) for k in SCORE_KEYS}


def test_bootstrap_of_the_alignment_evaluator_matches_score_batch():
  from tcts_jax.data.captioned_shapes import pooled_alignment
  from tcts_jax.evaluation.stats import bootstrap

  batch, scores = alignment_scores()
  boot = bootstrap(lambda idx: pooled_alignment(scores, idx), len(scores['num_objects']), 500, seed=0)
  for key, value in boot.items():
    assert value['value'] == pytest.approx(batch[key])
    assert value['ci95'][0] <= value['value'] <= value['ci95'][1]
  obj = boot['object_accuracy']
  assert 0 < obj['value'] < 1 and obj['ci95'][0] < obj['ci95'][1]


def test_paired_difference_is_the_difference_of_means_with_a_paired_interval():
  from tcts_jax.data.captioned_shapes import IMAGE_LEVEL, OBJECT_LEVEL, pooled_alignment
  from tcts_jax.evaluation.stats import bootstrap, paired_difference

  rng = np.random.default_rng(0)
  n = 400
  counts = rng.integers(1, 4, n).astype(float)
  a = {k: rng.integers(0, 4, n) / 3.0 for k in OBJECT_LEVEL}  # images differ a lot from each other
  a.update({k: rng.integers(0, 2, n).astype(float) for k in IMAGE_LEVEL}, num_objects=counts)
  b = {k: v.copy() for k, v in a.items()}
  worse = rng.choice(n, 20, replace=False)  # B = A with 5% of the images wrong
  b['object_accuracy'][worse], b['all_correct'][worse] = 0.0, 0.0

  diff = paired_difference(pooled_alignment, a, b, 1000, seed=0)
  own_a, own_b = (bootstrap(lambda idx, v=v: pooled_alignment(v, idx), n, 1000, seed=0) for v in (a, b))
  for key in diff:
    assert diff[key]['value'] == pytest.approx(own_a[key]['value'] - own_b[key]['value'])
  d = diff['object_accuracy']
  # Every image of A is at least as good as B's: every resample's difference is >= 0, and > 0 here.
  assert 0 < d['ci95'][0] <= d['value'] <= d['ci95'][1]
  # Pairing cancels the image-to-image spread: far narrower than A's own interval, and narrower than the
  # gap that two overlapping unpaired intervals would suggest.
  own_width = own_a['object_accuracy']['ci95'][1] - own_a['object_accuracy']['ci95'][0]
  assert d['ci95'][1] - d['ci95'][0] < 0.6 * own_width
  assert own_b['object_accuracy']['ci95'][1] > own_a['object_accuracy']['ci95'][0]  # unpaired: overlap
  same = paired_difference(pooled_alignment, a, a, 200, seed=0)
  assert all(v['value'] == 0 and v['ci95'] == [0, 0] for v in same.values())
  with pytest.raises(ValueError, match='same images'):
    paired_difference(pooled_alignment, a, {**b, 'num_objects': counts[:-1]}, 10, seed=0)


def test_rows_made_for_other_records_are_not_paired():
  from tcts_jax.evaluation.job import Row, comparison_rows

  rows = {'a': Row('a', 'generated', None, np.arange(4)), 'b': Row('b', 'generated', None, np.arange(4)[::-1])}
  with pytest.raises(ValueError, match='different records'):
    comparison_rows([('a', 'b')], rows, {}, None, [])
  notes = []
  assert comparison_rows([('a', 'c')], rows, {}, None, notes) == [] and 'no row c' in notes[0]


def test_load_shard_rejects_corrupt_stale_and_misshaped(tmp_path):
  from tcts_jax.evaluation.shards import load_shard, save_shard

  n, idx = 3, np.arange(8, 11)
  shard = {
    'indices': idx,
    'tokens': np.zeros((n, 4), np.int32),
    'images': np.zeros((n, 8, 8, 3), np.uint8),
    'seconds': np.float64(1.0),
    'slots': np.int64(4),
    'fingerprint': np.array('abc'),
  }
  path = tmp_path / 'shards' / 'x@1' / 'shard_00001.npz'
  save_shard(path, shard)
  assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left behind
  loaded, why = load_shard(path, idx, 'abc', 4, 8)
  assert why is None and np.array_equal(loaded['indices'], idx)
  assert load_shard(tmp_path / 'none.npz', idx, 'abc', 4, 8) == (None, None)
  assert 'other settings' in load_shard(path, idx, 'xyz', 4, 8)[1]
  assert 'image indices' in load_shard(path, idx + 1, 'abc', 4, 8)[1]
  assert 'tokens' in load_shard(path, idx, 'abc', 5, 8)[1]
  # A row's other per-image arrays (a generated row's diagnostics): a shard made without them is recomputed.
  assert "'diagnostics/churn'" in load_shard(path, idx, 'abc', 4, 8, {'diagnostics/churn': (6,)})[1]
  path.write_bytes(b'PK\x03\x04garbage')
  assert 'unreadable' in load_shard(path, idx, 'abc', 4, 8)[1]


def test_example_keys_depend_only_on_the_index():
  from tcts_jax.evaluation.generation import example_keys

  np.testing.assert_array_equal(example_keys(0, [5, 6, 7])[1:], example_keys(0, [6, 7]))
  assert not np.array_equal(example_keys(0, [5]), example_keys(1, [5]))


def test_rerender_keeps_the_scene_and_changes_the_background():
  from tcts_jax.data import shapes
  from tcts_jax.data import shapes_alignment as alignment
  from tcts_jax.data.captioned_shapes import rerender

  e = shapes.make_example(1, 4)
  again = rerender(e['objects'], e['num_objects'], 0, 4, 32)
  assert not np.array_equal(again, e['image'])
  assert alignment.score_image(again, e['objects'], e['num_objects'])['all_correct'] == 1.0


def test_feature_targets_and_fid_shapes(tiny_features):
  from tcts_jax.data import shapes
  from tcts_jax.metrics.fid_shapes import FIDShapes, fid_shapes_from_features
  from tcts_jax.models.features import NUM_CELL_CLASSES, cell_targets
  from tcts_jax.utils.config import load_config

  objects = np.array([[[2, 5, 1, 4], [0, 0, 0, 8], [-1, -1, -1, -1]]], np.int32)
  cells = np.asarray(cell_targets(objects, np.array([2])))[0]
  assert cells.tolist() == [0, 0, 0, 0, NUM_CELL_CLASSES - 1, 0, 0, 0, 1]
  fid = FIDShapes.load(tiny_features, load_config('configs/shapes.py:features,tiny'))
  images = np.stack([shapes.make_example(5, i)['image'] for i in range(40)])
  features = fid.features(images)
  assert features.shape == (40, 16) and np.isfinite(features).all()
  assert fid(images, images) == pytest.approx(0.0, abs=1e-6)
  assert fid(images[:20], images[20:]) > 0
  with pytest.raises(ValueError, match='more images than feature dimensions'):
    fid_shapes_from_features(features[:16], features)
