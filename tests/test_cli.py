"""Command-line smoke runs on the tiny model (bad input, every command: tests/test_bad_input.py)."""

import numpy as np
from PIL import Image

from tests.conftest import run_cli

TINY = '--config=configs/shapes.py:sample,tiny'


def assert_one_line_error(result, *fragments):
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  errors = [l for l in result.stderr.splitlines() if l.startswith('error: ')]
  assert len(errors) == 1, result.stderr[-2000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  assert 'Traceback' not in result.stderr


def test_sample_writes_grid_and_trajectories(tiny_weights, tmp_path):
  out = tmp_path / 'grid.png'
  r = run_cli(
    'tcts_jax.sample',
    TINY,
    f'--weights={tiny_weights}',
    '--prompt=a large red circle in the middle',
    '--prompt=a small blue square at the top',
    '--num_samples=3',
    f'--out={out}',
    '--trajectory',
    '--config.sampler.strategy=fas',
    '--config.sampler.steps=8',
  )
  assert r.returncode == 0, r.stderr[-3000:]
  grid = np.asarray(Image.open(out))
  assert grid.ndim == 3 and grid.shape[1] >= 3 * 32 * 4  # 3 samples per row, upscaled
  for i in range(2):
    strip = np.asarray(Image.open(tmp_path / f'grid_trajectory_{i}.png'))
    assert strip.shape[1] >= 8 * 32  # one column per step
  assert sorted(p.name for p in tmp_path.iterdir()) == ['grid.png', 'grid_trajectory_0.png', 'grid_trajectory_1.png']


def test_commands_run_from_any_directory(tmp_path):
  """The installed command runs outside the repo root (the shipped weights found from anywhere; configs too:
  tests/test_docs_commands.py runs every command from elsewhere); outputs get the normal permissions; a prompt
  longer than the text encoder reads is cut with one warning line."""
  import os

  long_prompt = ' and '.join(['a large red circle in the middle'] * 6)  # 47 words
  r = run_cli('tcts_jax.sample', f'--prompt={long_prompt}', '--num_samples=1', '--out=here.png', cwd=tmp_path)
  assert r.returncode == 0, r.stderr[-2000:]
  warnings = [l for l in r.stderr.splitlines() if l.startswith('warning: ')]
  assert len(warnings) == 1 and '47 words' in warnings[0] and 'last 7 are dropped' in warnings[0], r.stderr[-2000:]
  umask = os.umask(0)
  os.umask(umask)
  assert (tmp_path / 'here.png').stat().st_mode & 0o777 == 0o666 & ~umask
