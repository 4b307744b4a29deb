"""Training at scale, proven on this CPU: partition rules, a data + fsdp mesh of 8 host devices, two local
processes (loopback) and bfloat16 compute all train as one device does (docs/design.md §13)."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tcts_jax.utils import checkpoint, sharding

from tests.conftest import REPO, run_cli_processes, xla_flags
from tests.test_train import tiny

STEPS = 3


def generator_config(data_dir, weights, **train):
  config = tiny('generator', data_dir, num_steps=STEPS, log_every=1, image_every=0, checkpoint_every=STEPS, **train)
  with config.unlocked():
    config.tokenizer_checkpoint = str(weights)
  return config


@pytest.fixture(scope='module')
def one_device(tiny_data_dir, tiny_weights, tmp_path_factory):
  """(per-step losses, final params) of 3 generator steps on one device: the reference."""
  from tcts_jax.training.trainer import train_and_evaluate

  state, history = train_and_evaluate(generator_config(tiny_data_dir, tiny_weights), tmp_path_factory.mktemp('one'))
  return [m['loss'] for _, m in history], jax.tree.map(np.asarray, state.params)


def assert_same_training(losses, params, reference):
  """Losses and params of a run whose batch was split differently: equal up to float summation order.

  Params are compared as a whole: Adam's first steps move every weight by about ±lr whatever the size of
  its gradient, so a weight whose gradient is ~0 may step the other way on another summation order (one
  bias element did, by 1.3e-5). Such flips are bounded by 2 x the summed learning rates (1.2e-3 here)."""
  ref_losses, ref_params = reference
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)]) for p in (params, ref_params))
  assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(b)
  assert np.abs(a - b).max() <= 1.2e-3


# ------------------------------------------------------------------------------------------ partition rules


def test_partition_rules_place_each_leaf():
  shapes = {
    'params': {'generator': {'embed': (64, 32), 'dense': {'kernel': (32, 96), 'bias': (96,)}, 'norm': (5,)}},
    'opt_state': {'mu': {'generator': {'dense': {'kernel': (32, 96)}}}, 'count': ()},
  }
  tree = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, np.float32), shapes, is_leaf=lambda x: isinstance(x, tuple))
  rules = [('embed', (('data', 'fsdp'), None)), ('bias', 'replicate'), ('generator/', 'fsdp')]
  specs = sharding.partition_specs(tree, rules, {'data': 2, 'fsdp': 4})
  g = specs['params']['generator']
  assert g['embed'] == P(('data', 'fsdp'), None)  # an explicit spec, as written
  assert g['dense']['bias'] == P()  # the first matching rule wins
  assert g['dense']['kernel'] == P(None, 'fsdp')  # 'fsdp': the largest dimension the fsdp axis divides
  assert g['norm'] == P()  # none divides: replicated
  assert specs['opt_state']['mu']['generator']['dense']['kernel'] == P(None, 'fsdp')  # Adam moments alike
  assert specs['opt_state']['count'] == P()  # no rule matches: replicated
  assert sharding.partition_specs(tree, [('.*', 'fsdp')], {'data': 8, 'fsdp': 1}) == jax.tree.map(lambda _: P(), tree)


def test_partition_rules_fsdp_prefers_the_largest_dimension():
  tree = {'w': jax.ShapeDtypeStruct((8, 64, 16), np.float32), 'v': jax.ShapeDtypeStruct((12, 10), np.float32)}
  specs = sharding.partition_specs(tree, [('.*', 'fsdp')], {'fsdp': 4})
  assert specs == {'w': P(None, 'fsdp', None), 'v': P('fsdp', None)}  # 10 is not divisible by 4


@pytest.mark.parametrize(
  'rule, message',
  [
    (('w', ('fsdp', None, None)), 'not "fsdp", "replicate" or one entry per dimension'),
    (('w', ('model', None)), "names mesh axis 'model'"),
    (('w', (None, ('data', 'fsdp'))), 'splits dimension 1 of w (12, 10) over 8 devices: not divisible'),
    (('w', 'everything'), 'not "fsdp", "replicate"'),
  ],
)
def test_bad_partition_rules_name_the_rule(rule, message):
  with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')) as e:
    sharding.partition_specs({'w': jax.ShapeDtypeStruct((12, 10), np.float32)}, [rule], {'data': 2, 'fsdp': 4})
  assert repr(rule[0]) in str(e.value)


@pytest.mark.parametrize(
  'rules, message',
  [
    ([('(', 'fsdp')], 'not a regular expression'),
    ([('w', 'shard')], 'is not "fsdp", "replicate" or a tuple of axes'),
    ([('w', (None, 'tensor'))], "names mesh axis 'tensor'"),
    ([('w',)], 'a partition rule is \\(regex, spec\\)'),
  ],
)
def test_rules_no_tree_could_satisfy_are_refused_before_any_work(rules, message):
  with pytest.raises(ValueError, match=message):
    sharding.check_rules(rules, sharding.make_mesh({'data': -1, 'fsdp': 1}))


def test_make_mesh_sizes_and_errors():
  mesh = sharding.make_mesh({'data': -1, 'fsdp': 1})
  assert dict(mesh.shape) == {'data': jax.device_count(), 'fsdp': 1}
  assert sharding.batch_axes(sharding.make_mesh({'data': -1, 'model': 1})) == ('data',)
  for axes, message in [
    ({'data': 2 * jax.device_count()}, 'needs'),
    ({'data': -1, 'fsdp': -1}, 'at most one -1'),
    ({'data': 0}, 'positive'),
    ({}, 'at least one axis'),
  ]:
    with pytest.raises(ValueError, match=message):
      sharding.make_mesh(axes)


def test_without_axis_drops_only_that_axis():
  mesh = sharding.make_mesh({'data': 1, 'fsdp': 1, 'model': 1})
  spec = jax.sharding.NamedSharding(mesh, P(('data', 'fsdp'), None, 'model'))
  assert sharding.without_axis(spec, 'fsdp').spec == P('data', None, 'model')


# ------------------------------------------------------------------------------------------ whole runs


def test_data_parallel_and_fsdp_on_eight_devices_match_one_device(one_device, tiny_data_dir, tiny_weights, tmp_path):
  """8 host devices, pure data parallel and a 2 x 4 data x fsdp mesh (params and Adam moments split over
  4 devices): the losses and parameters of one device, and the fsdp state really is split."""
  env = {**os.environ, 'XLA_FLAGS': xla_flags('--xla_force_host_platform_device_count=8'), 'JAX_PLATFORMS': 'cpu'}
  code = f"""
import json, jax
from tests.test_scale import generator_config
from tcts_jax.training.trainer import train_and_evaluate
assert jax.device_count() == 8
out = {{}}
for name, mesh in [('dp', dict(data=-1, fsdp=1)), ('fsdp', dict(data=2, fsdp=4))]:
  config = generator_config({str(tiny_data_dir)!r}, {str(tiny_weights)!r}, mesh=mesh)
  state, history = train_and_evaluate(config, {str(tmp_path)!r} + '/' + name)
  kernel = state.params['generator']['block_0']['MlpBlock_0']['Dense_0']['kernel']
  mu = state.opt_state[1][0].mu['generator']['block_0']['MlpBlock_0']['Dense_0']['kernel']
  out[name] = dict(losses=[m['loss'] for _, m in history], spec=str(kernel.sharding.spec),
                   shard=list(kernel.addressable_shards[0].data.shape), mu_spec=str(mu.sharding.spec))
print(json.dumps(out))
"""
  r = subprocess.run([sys.executable, '-c', code], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert r.returncode == 0, r.stderr[-3000:]
  assert 'Involuntary full rematerialization' not in r.stderr  # the fsdp step gathers params, not activations
  out = json.loads(r.stdout.splitlines()[-1])
  assert out['dp']['spec'] == 'P()'
  assert out['fsdp']['spec'] == out['fsdp']['mu_spec'] == "P(None, 'fsdp')"
  assert out['fsdp']['shard'] == [32, 128 // 4]
  for name in ('dp', 'fsdp'):
    assert_same_training(out[name]['losses'], checkpoint.latest_params(tmp_path / name), one_device)


def test_two_processes_train_as_one_device(one_device, tiny_data_dir, tiny_weights, tmp_path):
  """The train CLI on 2 local processes of 4 host devices each (a coordinator on 127.0.0.1, fsdp over each
  process's 4 devices): each reads its half of every global batch, orbax writes one checkpoint together, and
  the losses and parameters are those of one device."""
  runs = run_cli_processes(
    'tcts_jax.train',
    '--config=configs/shapes.py:generator,tiny',
    f'--workdir={tmp_path / "run"}',
    f'--config.data.data_dir={tiny_data_dir}',
    f'--config.tokenizer_checkpoint={tiny_weights}',
    f'--config.train.num_steps={STEPS}',
    f'--config.train.checkpoint_every={STEPS}',
    '--config.train.log_every=1',
    '--config.train.image_every=0',
    '--config.train.mesh.data=2',
    '--config.train.mesh.fsdp=4',
  )
  for r in runs:
    assert r.returncode == 0, r.stderr[-3000:]
  lines = [l for l in runs[0].stdout.splitlines() if l.startswith('[generator] step')]
  assert len(lines) == STEPS and '[generator]' not in runs[1].stdout  # process 0 logs, process 1 is quiet
  losses = [float(l.split(' loss=')[1].split()[0]) for l in lines]
  np.testing.assert_allclose(losses, one_device[0], atol=1e-4)  # logged with 4 decimals
  saved = [p.name for p in (tmp_path / 'run' / 'checkpoints').iterdir()]
  assert str(STEPS) in saved and all(name.isdigit() for name in saved)  # one finished save per step
  assert_same_training(one_device[0], checkpoint.latest_params(tmp_path / 'run'), one_device)


def test_bfloat16_compute_keeps_float32_weights(one_device, tiny_data_dir, tiny_weights, tmp_path):
  """compute_dtype='bfloat16': the same steps on bf16 copies of the params; the weights and optimizer state
  stay float32, and the losses are the float32 ones to bf16 precision (but not bitwise: it did run in bf16)."""
  from tcts_jax.training.trainer import train_and_evaluate

  config = generator_config(tiny_data_dir, tiny_weights, compute_dtype='bfloat16')
  state, history = train_and_evaluate(config, tmp_path)
  assert {a.dtype for a in jax.tree.leaves(state.params)} == {np.dtype(np.float32)}
  assert {a.dtype for a in jax.tree.leaves(state.opt_state) if a.ndim} == {np.dtype(np.float32)}
  losses = [m['loss'] for _, m in history]
  np.testing.assert_allclose(losses, one_device[0], rtol=2e-2)
  assert losses != one_device[0]
