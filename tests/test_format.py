"""One formatter for the whole tree: ruff format, configured in pyproject.toml (2-space indents)."""

import subprocess
import sys

from tests.conftest import REPO


def test_the_tree_is_formatted():
  r = subprocess.run(
    [sys.executable, '-m', 'ruff', 'format', '--check', '.'], cwd=REPO, capture_output=True, text=True, timeout=120
  )
  assert r.returncode == 0, f'run `ruff format .` in the repo root:\n{r.stdout[-2000:]}{r.stderr[-1000:]}'
