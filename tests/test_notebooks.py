"""Every notebook in colabs/ runs top to bottom: on the shipped model, and amused_tcts.ipynb on the tiny random
aMUSEd fixture (tests/fixtures/tiny_amused; no network)."""

import pathlib

import nbclient
import nbformat
import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / 'colabs').glob('*.ipynb'))


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path):
  nb = nbformat.read(path, as_version=4)
  nbclient.NotebookClient(
    nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}}
  ).execute()
  errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
  assert not errors
