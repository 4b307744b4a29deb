"""Exact resume and faults: a run killed at any step and rerun ends with the train state of an uninterrupted run,
bit for bit; SIGTERM checkpoints the current step and exits 0; a NaN never reaches a checkpoint; unreadable
checkpoints fall back to the previous one."""

import os
import random
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tcts_jax.training import trainer
from tcts_jax.training.trainer import TrainingDiverged, train_and_evaluate
from tcts_jax.utils import checkpoint
from tests.conftest import REPO, run_cli, run_cli_processes
from tests.test_train import tiny

STEPS, EVERY = 12, 3  # checkpoints at 3, 6, 9, 12 (the last two kept)
TRAIN = dict(num_steps=STEPS, checkpoint_every=EVERY, log_every=1, image_every=0)


def cli_args(workdir, data_dir) -> list:
  return [
    '--config=configs/shapes.py:tokenizer,tiny',
    f'--workdir={workdir}',
    f'--config.data.data_dir={data_dir}',
    *(f'--config.train.{k}={v}' for k, v in TRAIN.items()),
  ]


def saved_state(workdir, step) -> dict:
  """Everything a checkpoint holds for the train state (params, optimizer state, step) as NumPy."""
  return jax.tree.map(
    np.asarray, checkpoint.restore_on_one_device(workdir / 'checkpoints' / str(step) / checkpoint.STATE)
  )


def assert_bitwise_equal(a: dict, b: dict):
  la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (path, x), (_, y) in zip(la, lb, strict=True):
    assert x.dtype == y.dtype and np.array_equal(x, y), jax.tree_util.keystr(path)


@pytest.fixture(scope='module')
def reference(tiny_data_dir, tmp_path_factory):
  """An uninterrupted run's workdir (checkpoints 9 and 12)."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  train_and_evaluate(tiny('tokenizer', tiny_data_dir, **TRAIN), workdir)
  return workdir


def signal_at_step(sig, step: int, args: list) -> tuple:
  """Run the trainer CLI, send `sig` once it has logged `step`; (return code, stdout)."""
  env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
  with subprocess.Popen(
    [sys.executable, '-m', 'tcts_jax.train', *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  ) as process:
    lines = []
    for line in process.stdout:
      lines.append(line)
      if f'] step {step}/' in line:
        process.send_signal(sig)
        break
    lines += process.stdout.readlines()
    return process.wait(timeout=300), ''.join(lines)


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM], ids=['SIGKILL', 'SIGTERM'])
def test_a_killed_run_rerun_ends_bitwise_equal_to_an_uninterrupted_one(reference, tiny_data_dir, tmp_path, sig):
  kill_step = random.randrange(EVERY + 1, STEPS)  # after the first checkpoint; reported if this fails
  args = cli_args(tmp_path, tiny_data_dir)
  code, out = signal_at_step(sig, kill_step, args)
  if sig == signal.SIGKILL:
    assert code == -signal.SIGKILL, out[-2000:]
  else:  # the step under way when the signal came (or the next) is saved, and the exit is clean
    assert code == 0, out[-2000:]
    saved = max(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
    assert saved in (kill_step, kill_step + 1)
    assert f'stopped by SIGTERM: checkpoint of step {saved} saved' in out

  r = run_cli('tcts_jax.train', *args)
  assert r.returncode == 0, r.stderr[-2000:]
  assert 'resumed from step' in r.stdout, f'killed at step {kill_step}'
  assert_bitwise_equal(saved_state(tmp_path, STEPS), saved_state(reference, STEPS))


def test_a_non_finite_metric_stops_training_before_any_checkpoint_of_it(tiny_data_dir, tmp_path, monkeypatch):
  real_step = trainer.train_step

  def poisoned(*args, **kwargs):  # the loss and params turn NaN at step 8
    new, metrics = real_step(*args, **kwargs)
    bad = new.step >= 8
    params = jax.tree.map(lambda p: jnp.where(bad, jnp.nan, p), new.params)
    return new.replace(params=params), {**metrics, 'loss': jnp.where(bad, jnp.nan, metrics['loss'])}

  monkeypatch.setattr(trainer, 'train_step', poisoned)
  config = tiny('tokenizer', tiny_data_dir, **{**TRAIN, 'log_every': 100})  # found by the one-step-late check
  with pytest.raises(TrainingDiverged, match=r'^training diverged: loss not finite at step 8$'):
    train_and_evaluate(config, tmp_path)
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit())
  assert steps == [3, 6]
  for step in steps:
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(saved_state(tmp_path, step)['params']))


def truncate_state_files(step_dir):
  for f in (step_dir / checkpoint.STATE).rglob('*'):
    if f.is_file() and f.stat().st_size > 0:
      f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def delete_data_position(step_dir):
  for f in (step_dir / checkpoint.DATA).iterdir():
    f.unlink()


def interrupt_the_save(step_dir):  # what an unfinished orbax save looks like
  step_dir.rename(step_dir.with_name(f'{step_dir.name}.orbax-checkpoint-tmp-1234'))


@pytest.mark.parametrize('damage', [truncate_state_files, delete_data_position, interrupt_the_save])
def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(reference, tiny_data_dir, tmp_path, damage):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  damage(workdir / 'checkpoints' / str(STEPS))
  config = tiny('tokenizer', tiny_data_dir, **TRAIN)
  if damage is interrupt_the_save:  # not a checkpoint at all: no warning
    state, history = train_and_evaluate(config, workdir)
  else:
    with pytest.warns(UserWarning, match=f'checkpoint step {STEPS} in .* is unreadable .*; using step 9 instead'):
      state, history = train_and_evaluate(config, workdir)
    assert (workdir / 'unreadable_checkpoints' / str(STEPS)).is_dir()  # moved aside, not deleted
  assert [s for s, _ in history] == [10, 11, 12] and int(state.step) == STEPS
  assert_bitwise_equal(saved_state(workdir, STEPS), saved_state(reference, STEPS))


def test_exported_params_fall_back_too_and_none_readable_is_one_line(reference, tmp_path):
  workdir = tmp_path / 'run'
  shutil.copytree(reference, workdir)
  truncate_state_files(workdir / 'checkpoints' / str(STEPS))
  with pytest.warns(UserWarning, match=f'step {STEPS} .* unreadable .*; using step 9 instead'):
    params = checkpoint.latest_params(workdir)
  assert_bitwise_equal(params, saved_state(workdir, 9)['params'])

  truncate_state_files(workdir / 'checkpoints' / '9')
  with pytest.raises(checkpoint.CheckpointError, match=r'no readable checkpoint in .*: steps \[12, 9\] are all'):
    checkpoint.latest_params(workdir)
  out = tmp_path / 'weights'
  r = run_cli(
    'tcts_jax.export',
    '--config=configs/shapes.py:sample,tiny',
    f'--tokenizer={workdir}',
    f'--generator={workdir}',
    f'--out={out}',
  )
  assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'no readable checkpoint' in r.stderr, r.stderr
  assert not out.exists()


# One host device per process: the preemption service and the collective save are what is tested here
# (tests/test_scale.py runs 4 devices per process). 106 s instead of 136 s with 4 (measured alone).
DEVICES = 1


def test_two_processes_stop_together_on_a_preemption_notice_and_resume_bitwise(tiny_data_dir, tmp_path):
  """Multi-host preemption, on 2 local processes of one host device each: SIGTERM to process 1 is a preemption
  notice for JAX's preemption service; orbax's `reached_preemption` stops both at the same step, which they
  save together, and both exit 0. Rerun, they end with the train state of an uninterrupted 2-process run, bit
  for bit."""

  def args(workdir):
    return [*cli_args(workdir, tiny_data_dir), '--config.train.num_steps=30', '--config.train.checkpoint_every=10']

  for r in run_cli_processes('tcts_jax.train', *args(tmp_path / 'straight'), devices_per_process=DEVICES):
    assert r.returncode == 0, r.stderr[-2000:]
  notice = ('] step 12/', 1, signal.SIGTERM)
  runs = run_cli_processes('tcts_jax.train', *args(tmp_path / 'run'), signal_when=notice, devices_per_process=DEVICES)
  assert [r.returncode for r in runs] == [0, 0], runs[1].stderr[-2000:]
  saved = max(int(p.name) for p in (tmp_path / 'run' / 'checkpoints').iterdir() if p.name.isdigit())
  assert 12 <= saved < 30 and f'stopped by a preemption notice: checkpoint of step {saved} saved' in runs[0].stdout
  assert 'SIGTERM caught' in runs[1].stderr  # the notice went to JAX, not to a handler of ours
  runs = run_cli_processes('tcts_jax.train', *args(tmp_path / 'run'), devices_per_process=DEVICES)
  assert [r.returncode for r in runs] == [0, 0], runs[0].stderr[-2000:]
  assert f'resumed from step {saved}' in runs[0].stdout
  assert_bitwise_equal(saved_state(tmp_path / 'run', 30), saved_state(tmp_path / 'straight', 30))


def test_checkpoints_without_a_data_position_export_but_do_not_resume(reference, tiny_data_dir, tmp_path):
  """Workdirs written before the data position was saved (one unnamed item per step)."""
  state = saved_state(reference, STEPS)
  with ocp.CheckpointManager(tmp_path / 'checkpoints') as mngr:
    mngr.save(STEPS, args=ocp.args.StandardSave(state))
  assert_bitwise_equal(checkpoint.latest_params(tmp_path), state['params'])
  with pytest.raises(checkpoint.CheckpointError, match='predate the saved data position'):
    train_and_evaluate(tiny('tokenizer', tiny_data_dir, **TRAIN), tmp_path)


def test_a_multi_host_preemption_notice_saves_that_step_and_stops(tiny_data_dir, tmp_path, monkeypatch, capsys):
  """On several hosts orbax's `reached_preemption(step)` (JAX's preemption service) is the signal; here it is
  faked to fire at step 5, which is saved although it is off the checkpoint_every grid."""
  monkeypatch.setattr(ocp.CheckpointManager, 'reached_preemption', lambda self, step: step == 5)
  state, _ = train_and_evaluate(tiny('tokenizer', tiny_data_dir, **TRAIN), tmp_path)
  assert int(state.step) == 5
  assert sorted(int(p.name) for p in (tmp_path / 'checkpoints').iterdir() if p.name.isdigit()) == [3, 5]
  assert 'stopped by a preemption notice: checkpoint of step 5 saved' in capsys.readouterr().out
