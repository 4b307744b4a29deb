"""launch/multihost.py: the exact commands it would run (--dry-run), and refusals."""

import shlex
import subprocess
import sys

from tests.conftest import REPO

TRAIN = ['python', '-m', 'tcts_jax.train', '--config=configs/shapes.py:generator', '--workdir=/mnt/shared/gen']


def dry_run(*args):
  r = subprocess.run(
    [sys.executable, 'launch/multihost.py', *args], cwd=REPO, capture_output=True, text=True, timeout=60
  )
  return r.returncode, [shlex.split(line) for line in r.stdout.splitlines()], r.stderr


def test_tpu_commands():
  where = ['--name=tcts', '--zone=us-central2-b', '--dry-run']
  code, lines, _ = dry_run('tpu', 'create', *where, '--accelerator=v4-32')
  assert code == 0 and lines == [
    'gcloud compute tpus tpu-vm create tcts --zone=us-central2-b --accelerator-type=v4-32 '
    '--version=tpu-ubuntu2204-base'.split()
  ]
  code, lines, _ = dry_run('tpu', 'install', *where, '--repo=https://example.org/tcts-jax.git', '--ref=v1')
  assert code == 0 and lines[0][:8] == 'gcloud compute tpus tpu-vm ssh tcts --zone=us-central2-b --worker=all'.split()
  remote = lines[0][8].removeprefix('--command=')
  assert remote.startswith('git clone https://example.org/tcts-jax.git tcts-jax && cd tcts-jax && git checkout v1')
  assert "pip install -r requirements.txt -e . 'jax[tpu]'" in remote
  # run: the command on every worker, joining the others through JAX's TPU auto-detection.
  code, lines, _ = dry_run('tpu', 'run', *where, '--', *TRAIN)
  assert code == 0 and len(lines) == 1 and '--worker=all' in lines[0]
  assert shlex.split(lines[0][-1].removeprefix('--command=')) == ['cd', 'tcts-jax', '&&', *TRAIN, '--distributed']
  code, lines, _ = dry_run('tpu', 'delete', *where)
  assert lines == [['gcloud', 'compute', 'tpus', 'tpu-vm', 'delete', 'tcts', '--zone=us-central2-b', '--quiet']]


def test_gpu_commands_give_each_host_its_process_id():
  code, lines, _ = dry_run(
    'gpu', 'run', '--hosts=g0,g1,g2', '--port=1234', '--dir=/srv/tcts', '--dry-run', '--', *TRAIN
  )
  assert code == 0 and [line[:2] for line in lines] == [['ssh', 'g0'], ['ssh', 'g1'], ['ssh', 'g2']]
  for i, line in enumerate(lines):
    flags = ['--coordinator_address=g0:1234', '--num_processes=3', f'--process_id={i}']
    assert shlex.split(line[2]) == ['cd', '/srv/tcts', '&&', *TRAIN, *flags]
  code, lines, _ = dry_run('gpu', 'run', '--hosts=localhost', '--dry-run', '--', *TRAIN)
  assert lines == [TRAIN]  # one host: all its GPUs in one process, run here


def test_the_flags_it_adds_are_the_clis_own():
  for module in ('tcts_jax.train', 'tcts_jax.evaluate'):
    r = subprocess.run(
      [sys.executable, '-m', module, '--helpfull'], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    for flag in ('--[no]distributed:', '--coordinator_address:', '--num_processes:', '--process_id:'):
      assert flag in r.stdout, (module, flag)


def test_refusals():
  code, _, err = dry_run('tpu', 'install', '--name=t', '--zone=z', '--dry-run')
  assert code == 2 and 'tpu install needs --repo' in err
  code, _, err = dry_run('tpu', 'run', '--name=t', '--zone=z', '--dry-run')
  assert code != 0 and err.strip().splitlines() == [
    'error: give the command to run after --, e.g. -- python -m tcts_jax.train --config=...'
  ]
  code, _, err = dry_run('tpu', 'create', '--name=t', '--zone=z', '--dry-run', '--', 'ls')
  assert code == 2 and 'tpu create takes no command' in err
