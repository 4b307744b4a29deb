"""Every notebook in colabs/ runs top to bottom: on the shipped model, and amused_tcts.ipynb on the tiny random
aMUSEd fixture (tests/fixtures/tiny_amused; no network). A notebook's parameter cell may be set to a quicker value
(`QUICKER`): the code is the same, on less data."""

import pathlib

import nbclient
import nbformat
import pytest

from tests.conftest import REPO

NOTEBOOKS = sorted((REPO / 'colabs').glob('*.ipynb'))
# {notebook: {parameter line: the line the test runs}}: the eval job on 24 images instead of 80 (the metrics
# themselves are tested in tests/test_evaluate.py).
QUICKER = {'evaluation.ipynb': {'NUM_IMAGES = None': 'NUM_IMAGES = 24'}}


@pytest.mark.parametrize('path', NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: pathlib.Path):
  nb = nbformat.read(path, as_version=4)
  for line, quicker in QUICKER.get(path.name, {}).items():
    cell = next(c for c in nb.cells if c.cell_type == 'code' and line in c.source)
    cell.source = cell.source.replace(line, quicker)
  nbclient.NotebookClient(
    nb, timeout=900, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}}
  ).execute()
  errors = [o for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []) if o.output_type == 'error']
  assert not errors
