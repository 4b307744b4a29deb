r"""Does a killed training run resume bit-exactly? The resume test's procedure at 10 random kill points.

  python benchmarks/resume_trials.py [--trials=10] [--seed=0]

Trains captioned shapes' tiny tokenizer stage for 12 steps (checkpoints every 3, through the trainer CLI)
without interruption; then per trial, in a fresh workdir, starts the same command, kills it with SIGKILL once
it has logged a random step after the first checkpoint, and reruns it to the end. A trial counts when the
final train state (params, optimizer state, step) equals the uninterrupted run's bit for bit.
The LAST line printed is one JSON object: {"resume_bitwise_equal": k, "trials": n, ...}.
"""

import argparse
import json
import pathlib
import random
import signal
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the tests' helpers

from tcts_jax.data import shapes_tfds
from tests.conftest import run_cli
from tests.test_resume import EVERY, STEPS, assert_bitwise_equal, cli_args, saved_state, signal_at_step


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--trials', type=int, default=10)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  rng = random.Random(args.seed)
  start = time.perf_counter()
  with tempfile.TemporaryDirectory() as tmp:
    root = pathlib.Path(tmp)
    shapes_tfds.build('tiny', data_dir=str(root / 'tfds'))
    r = run_cli('tcts_jax.train', *cli_args(root / 'reference', root / 'tfds'))
    assert r.returncode == 0, r.stderr[-2000:]
    reference = saved_state(root / 'reference', STEPS)
    equal, kill_steps = 0, []
    for trial in range(args.trials):
      workdir, kill_step = root / f'trial{trial}', rng.randrange(EVERY + 1, STEPS)
      code, _ = signal_at_step(signal.SIGKILL, kill_step, cli_args(workdir, root / 'tfds'))
      r = run_cli('tcts_jax.train', *cli_args(workdir, root / 'tfds'))
      try:
        assert code == -signal.SIGKILL and r.returncode == 0
        assert_bitwise_equal(saved_state(workdir, STEPS), reference)
        equal += 1
        verdict = 'bitwise equal'
      except AssertionError as e:
        verdict = f'DIFFERENT ({e})'
      kill_steps.append(kill_step)
      print(f'trial {trial}: killed at step {kill_step}, resumed: {verdict}', flush=True)
  result = {
    'resume_bitwise_equal': equal,
    'trials': args.trials,
    'kill_steps': kill_steps,
    'seconds': round(time.perf_counter() - start),
  }
  print(json.dumps(result))


if __name__ == '__main__':
  main()
