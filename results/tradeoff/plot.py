"""The paper's Fig. 1 analog: object accuracy against FID-shapes, the persistent weight swept from random revoke
(w = 1) to uniform (w -> inf), with U2R / R2U and the TCTS rows as points; one panel per benchmark (run.sh)."""

import json
import pathlib

from matplotlib.figure import Figure

HERE = pathlib.Path(__file__).parent
DEFAULT_WEIGHT = 10.0  # sampler.persistent_weight of configs/shapes.py and configs/scenes.py: the row 'persistent@16'
BENCHMARKS = {'shapes': 'captioned shapes, 1000 test captions', 'scenes': 'shape scenes, 1000 test captions'}


def persistent_weight(row: dict) -> float:
  """w of a persistent row on the curve: random revoke is w = 1, uniform the limit w -> inf."""
  if row['name'].startswith('random_revoke'):
    return 1.0
  if row['name'].startswith('uniform'):
    return float('inf')
  return row['settings'].get('persistent_weight', DEFAULT_WEIGHT)


def point(row: dict) -> tuple[float, float]:
  return row['metrics']['fid_shapes']['value'], 100 * row['metrics']['object_accuracy']['value']


fig = Figure(figsize=(12, 5))
for ax, (name, title) in zip(fig.subplots(1, 2), BENCHMARKS.items()):
  rows = {r['name']: r for r in json.loads((HERE / f'{name}.json').read_text())['rows'] if r['kind'] == 'generated'}
  curve = sorted(
    (r for n, r in rows.items() if n.split('@')[0] in ('random_revoke', 'persistent', 'uniform')), key=persistent_weight
  )
  x, y = zip(*map(point, curve))
  ax.plot(x, y, marker='o', label='persistent, w from 1 (RR) to inf (uniform)')
  labels = {}  # points that coincide (w = 1000 gives uniform's images) share one label
  for r, xy in zip(curve, zip(x, y)):
    labels.setdefault(xy, []).append(f'{persistent_weight(r):g}')
  for xy, weights in labels.items():
    ax.annotate('w=' + ', '.join(weights), xy, textcoords='offset points', xytext=(4, 4), fontsize=7)
  for label, marker in (('u2r@16', 's'), ('r2u@16', 'D'), ('tcts_fas@16', '*'), ('tcts_persistent@16', 'P')):
    ax.plot(*point(rows[label]), marker=marker, linestyle='none', markersize=9, label=label)
  ax.set_xlabel('FID-shapes (lower is better)')
  ax.set_ylabel('object accuracy (%)')
  ax.set_title(f'{title}, 16 steps')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(HERE / 'tradeoff.png', dpi=110)
