"""The eval job (tcts_jax.evaluate) and FID-shapes: end to end on the tiny model, resume, sharding, bad input."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli
from tests.test_cli import assert_one_line_error

SMOKE = '--config=configs/shapes.py:eval,smoke,tiny'
CLIP_DIR = REPO / 'tests' / 'fixtures' / 'tiny_clip'


@pytest.fixture(scope='module')
def tiny_features(tmp_path_factory, tiny_data_dir):
  """A tiny FID-shapes feature network trained by the real trainer (in-process, 20 steps): its workdir."""
  from tcts_jax.api import load_config
  from tcts_jax.train import train_and_evaluate
  config = load_config('configs/shapes.py:features,tiny')
  with config.unlocked():
    config.data.data_dir = str(tiny_data_dir)
  workdir = tmp_path_factory.mktemp('features')
  _, history = train_and_evaluate(config, workdir)
  assert history[-1][1]['loss'] < history[0][1]['loss']
  return workdir


def eval_args(tiny_weights, tiny_data_dir, workdir, *extra):
  return [SMOKE, f'--workdir={workdir}', f'--weights={tiny_weights}', f'--config.data.data_dir={tiny_data_dir}',
          *extra]


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory, tiny_weights, tiny_data_dir, tiny_features):
  """The smoke eval with every metric (FID-shapes on the tiny features, CLIP-S/MID on the tiny CLIP)."""
  workdir = tmp_path_factory.mktemp('eval') / 'run'
  r = run_cli('tcts_jax.evaluate', *eval_args(tiny_weights, tiny_data_dir, workdir,
                                              f'--config.eval.features_weights={tiny_features}',
                                              f'--config.eval.clip_weights={CLIP_DIR}'))
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r


def shard_files(workdir):
  return sorted((workdir / 'shards').glob('*/shard_*.npz'))


def without_timing(results):
  return [{k: v for k, v in row.items() if k not in ('seconds_per_image', 'compile_seconds')}
          for row in results['rows']]


def test_smoke_writes_results(smoke_run):
  workdir, r = smoke_run
  results = json.loads((workdir / 'results.json').read_text())
  names = [row['name'] for row in results['rows']]
  assert names == ['purity@8', 'uniform@8', 'random_revoke@8', 'uniform@8 + revision (random)',
                   'real (re-rendered)', 'VQ reconstruction']
  for row in results['rows']:
    a = row['alignment']['object_accuracy']
    assert 0 <= a['ci95'][0] <= a['mean'] <= a['ci95'][1] <= 1
    assert row['fid_shapes'] is not None and row['fid_shapes'] >= -1e-6
    assert row['clip_score'] is not None and row['mid'] is not None
  generated = [row for row in results['rows'] if row['kind'] == 'generated']
  assert all(row['seconds_per_image'] > 0 for row in generated)
  real = next(row for row in results['rows'] if row['kind'] == 'real')
  assert real['alignment']['all_correct']['mean'] >= 0.98   # re-rendered scenes are exact
  # 24 images in shards of 8, for each of the three grid entries and the refinement of uniform@8.
  assert [f.relative_to(workdir / 'shards').as_posix() for f in shard_files(workdir)] == [
      f'{e}/shard_{i:05d}.npz' for e in ('purity@8', 'random_revoke@8', 'refine_revision_random', 'uniform@8')
      for i in range(3)]
  md = (workdir / 'results.md').read_text()
  assert 'FID-shapes' in md and 'NOT Inception FID' in md and all(f'| {n} |' in md for n in names)
  # The smoke config's one eval.compare pair: purity@8 - random_revoke@8, paired over the same images.
  [comparison] = results['comparisons']
  rows = {row['name']: row['alignment'] for row in results['rows']}
  assert (comparison['a'], comparison['b']) == ('purity@8', 'random_revoke@8')
  for key, d in comparison['difference'].items():
    assert d['mean'] == pytest.approx(rows['purity@8'][key]['mean'] - rows['random_revoke@8'][key]['mean'])
    assert d['ci95'][0] <= d['mean'] <= d['ci95'][1]
  assert '## Paired differences' in md and '| purity@8 | random_revoke@8 |' in md
  png = np.asarray(Image.open(workdir / 'tradeoff.png'))
  assert png.ndim == 3 and png.shape[0] > 200
  assert 'eval shards' in r.stderr   # the progress bar


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


def test_resume_skips_finished_and_recomputes_missing_or_corrupt(smoke_run, tiny_weights, tiny_data_dir,
                                                                 tiny_features, tmp_path):
  original, _ = smoke_run
  workdir = tmp_path / 'run'
  shutil.copytree(original, workdir)
  files = shard_files(workdir)
  before = {f: np.load(f)['tokens'] for f in files}
  missing, corrupt = files[1], files[4]
  missing.unlink()
  corrupt.write_bytes(corrupt.read_bytes()[:300])
  untouched = {f: f.stat().st_mtime_ns for f in files if f not in (missing, corrupt)}
  r = run_cli('tcts_jax.evaluate', *eval_args(tiny_weights, tiny_data_dir, workdir,
                                              f'--config.eval.features_weights={tiny_features}',
                                              f'--config.eval.clip_weights={CLIP_DIR}'))
  assert r.returncode == 0, r.stderr[-3000:]
  warnings = [l for l in r.stderr.splitlines() if 'warning:' in l]
  assert len(warnings) == 1 and corrupt.name in warnings[0] and 'recomputing' in warnings[0], r.stderr[-2000:]
  assert {f: f.stat().st_mtime_ns for f in untouched} == untouched   # finished shards were not rewritten
  for f in files:
    np.testing.assert_array_equal(np.load(f)['tokens'], before[f])
  old, new = (json.loads((d / 'results.json').read_text()) for d in (original, workdir))
  assert without_timing(new) == without_timing(old)


def test_sharded_generation_matches_one_device(smoke_run, tiny_weights, tiny_data_dir, tmp_path):
  """8 host devices (per-device batch 1) give the tokens of the 1-device run; also: no features weights and
  an entry needing a selector are skipped with a note."""
  original, _ = smoke_run
  workdir = tmp_path / 'run8'
  r = run_cli('tcts_jax.evaluate', *eval_args(tiny_weights, tiny_data_dir, workdir,
                                              "--config.eval.grid=('random_revoke@8', 'tcts@8')",
                                              '--config.eval.reference_rows=False',
                                              '--config.eval.refinement.base='),
              env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert r.returncode == 0, r.stderr[-3000:]
  results = json.loads((workdir / 'results.json').read_text())
  assert results['devices'].startswith('8 x')
  assert [row['name'] for row in results['rows']] == ['random_revoke@8']
  notes = ' '.join(results['notes'])
  assert 'skipped tcts@8' in notes and 'FID-shapes skipped' in notes and 'CLIP-S and MID skipped' in notes
  assert results['rows'][0]['fid_shapes'] is None
  files = sorted((workdir / 'shards' / 'random_revoke@8').glob('*.npz'))
  assert len(files) == 3
  for f in files:
    one, eight = np.load(original / 'shards' / 'random_revoke@8' / f.name), np.load(f)
    np.testing.assert_array_equal(eight['tokens'], one['tokens'])
    # Decoding convolves batches of another size: pixels may differ by a rounding step, no more.
    assert np.abs(eight['images'].astype(int) - one['images'].astype(int)).max() <= 1


@pytest.mark.parametrize('args, fragments', [
    (["--config.eval.grid=('purity@8', 'nope@8')"], ['nope@8', 'unknown strategy']),
    (["--config.eval.grid=('purity',)"], ['bad eval.grid entry', 'strategy@steps']),
    (['--config.eval.num_images=8', 'FEATURES'], ['FID-shapes needs more images', '16 feature dimensions']),
    (['--config.eval.shard_size=0'], ['eval.shard_size']),
    (["--config.eval.refinement.methods=('revision:oracle',)"], ['bad eval.refinement method', 'revision:oracle']),
    (['--config.eval.refinement.base=purity@16'], ['eval.refinement.base', 'not an eval.grid entry']),
    (["--config.eval.compare=('purity@8',)"], ['bad eval.compare pair', "'purity@8'"]),
])
def test_bad_input_fails_before_generating(tiny_weights, tiny_data_dir, tiny_features, tmp_path, args, fragments):
  args = [f'--config.eval.features_weights={tiny_features}' if a == 'FEATURES' else a for a in args]
  r = run_cli('tcts_jax.evaluate', *eval_args(tiny_weights, tiny_data_dir, tmp_path / 'run', *args))
  assert_one_line_error(r, *fragments)
  assert not (tmp_path / 'run').exists()


# ------------------------------------------------------------------------------------- in-process units


def test_parse_grid():
  from tcts_jax.evaluate import Entry, parse_grid
  assert parse_grid(['purity@16', ('uniform', 25), 'uniform:4,random_revoke:4@8']) == [
      Entry('purity', 16), Entry('uniform', 25), Entry('uniform:4,random_revoke:4', 8)]
  assert Entry('uniform:4,random_revoke:4', 8).dirname == 'uniform_4_random_revoke_4@8'
  for bad in (['purity'], ['purity@x'], [('purity',)], [], ['a@1', 'a@1']):
    with pytest.raises(ValueError):
      parse_grid(bad)


def test_bootstrap_alignment_matches_score_batch():
  from tcts_jax.data import shapes
  from tcts_jax.evaluate import SCORE_KEYS, bootstrap_alignment
  from tcts_jax.metrics import alignment
  examples = [shapes.make_example(3, i) for i in range(12)]
  images = np.stack([e['image'] for e in examples])
  objects = np.roll(np.stack([e['objects'] for e in examples]), 1, 0)  # half wrong: non-trivial means
  counts = np.roll(np.array([e['num_objects'] for e in examples]), 1)
  objects[::2], counts[::2] = np.stack([e['objects'] for e in examples])[::2], np.array(
      [e['num_objects'] for e in examples])[::2]
  batch = alignment.score_batch(images, objects, counts)
  scores = {k: batch['per_image'][k].astype(float) for k in SCORE_KEYS}
  boot = bootstrap_alignment(scores, 500, seed=0)
  for key, value in boot.items():
    assert value['mean'] == pytest.approx(batch[key])
    assert value['ci95'][0] <= value['mean'] <= value['ci95'][1]
  assert 0 < boot['object_accuracy']['mean'] < 1 and boot['object_accuracy']['ci95'][0] < boot['object_accuracy']['ci95'][1]


def test_paired_difference_is_the_difference_of_means_with_a_paired_interval():
  from tcts_jax.evaluate import IMAGE_LEVEL, OBJECT_LEVEL, bootstrap_alignment, paired_difference
  rng = np.random.default_rng(0)
  n = 400
  counts = rng.integers(1, 4, n).astype(float)
  a = {k: rng.integers(0, 4, n) / 3.0 for k in OBJECT_LEVEL}  # images differ a lot from each other
  a.update({k: rng.integers(0, 2, n).astype(float) for k in IMAGE_LEVEL}, num_objects=counts)
  b = {k: v.copy() for k, v in a.items()}
  worse = rng.choice(n, 20, replace=False)  # B = A with 5% of the images wrong
  b['object_accuracy'][worse], b['all_correct'][worse] = 0.0, 0.0

  diff = paired_difference(a, b, 1000, seed=0)
  own_a, own_b = bootstrap_alignment(a, 1000, seed=0), bootstrap_alignment(b, 1000, seed=0)
  for key in diff:
    assert diff[key]['mean'] == pytest.approx(own_a[key]['mean'] - own_b[key]['mean'])
  d = diff['object_accuracy']
  # Every image of A is at least as good as B's: every resample's difference is >= 0, and > 0 here.
  assert 0 < d['ci95'][0] <= d['mean'] <= d['ci95'][1]
  # Pairing cancels the image-to-image spread: far narrower than A's own interval, and narrower than the
  # gap that two overlapping unpaired intervals would suggest.
  own_width = own_a['object_accuracy']['ci95'][1] - own_a['object_accuracy']['ci95'][0]
  assert d['ci95'][1] - d['ci95'][0] < 0.6 * own_width
  assert own_b['object_accuracy']['ci95'][1] > own_a['object_accuracy']['ci95'][0]  # unpaired: overlap
  same = paired_difference(a, a, 200, seed=0)
  assert all(v['mean'] == 0 and v['ci95'] == [0, 0] for v in same.values())
  with pytest.raises(ValueError, match='same images'):
    paired_difference(a, {**b, 'num_objects': counts[::-1].copy()}, 10, seed=0)


def test_load_shard_rejects_corrupt_stale_and_misshaped(tmp_path):
  from tcts_jax.evaluate import SCORE_KEYS, load_shard, save_shard
  n, idx = 3, np.arange(8, 11)
  shard = {'indices': idx, 'tokens': np.zeros((n, 4), np.int32), 'images': np.zeros((n, 8, 8, 3), np.uint8),
           **{f'score_{k}': np.zeros(n) for k in SCORE_KEYS}, 'seconds': np.float64(1.0), 'slots': np.int64(4),
           'fingerprint': np.array('abc')}
  path = tmp_path / 'shards' / 'x@1' / 'shard_00001.npz'
  save_shard(path, shard)
  assert sorted(p.name for p in path.parent.iterdir()) == [path.name]   # no temp file left behind
  loaded, why = load_shard(path, idx, 'abc', 4, 8)
  assert why is None and np.array_equal(loaded['indices'], idx)
  assert load_shard(tmp_path / 'none.npz', idx, 'abc', 4, 8) == (None, None)
  assert 'other settings' in load_shard(path, idx, 'xyz', 4, 8)[1]
  assert 'image indices' in load_shard(path, idx + 1, 'abc', 4, 8)[1]
  assert 'tokens' in load_shard(path, idx, 'abc', 5, 8)[1]
  path.write_bytes(b'PK\x03\x04garbage')
  assert 'unreadable' in load_shard(path, idx, 'abc', 4, 8)[1]


def test_example_keys_depend_only_on_the_index():
  from tcts_jax.evaluate import example_keys
  np.testing.assert_array_equal(example_keys(0, [5, 6, 7])[1:], example_keys(0, [6, 7]))
  assert not np.array_equal(example_keys(0, [5]), example_keys(1, [5]))


def test_rerender_keeps_the_scene_and_changes_the_background():
  from tcts_jax.data import shapes
  from tcts_jax.evaluate import rerender
  from tcts_jax.metrics import alignment
  e = shapes.make_example(1, 4)
  again = rerender(e['objects'], e['num_objects'], 0, 4, 32)
  assert not np.array_equal(again, e['image'])
  assert alignment.score_image(again, e['objects'], e['num_objects'])['all_correct'] == 1.0


def test_feature_targets_and_fid_shapes(tiny_features):
  from tcts_jax.api import load_config
  from tcts_jax.data import shapes
  from tcts_jax.metrics.fid_shapes import FIDShapes, fid_shapes_from_features
  from tcts_jax.models.features import NUM_CELL_CLASSES, cell_targets
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
