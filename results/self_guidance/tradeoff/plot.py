"""Object accuracy against FID-shapes, one curve per guidance, points = token temperatures (results.json of run.sh)."""

import json
import pathlib

from matplotlib.figure import Figure

HERE = pathlib.Path(__file__).parent
GUIDANCE = {
  (0.0, 0.0): 'no guidance',
  (3.0, 0.0): 'CFG 3',
  (0.0, 1.0): 'self-guidance s = 1',
  (3.0, 1.0): 'CFG 3 + self-guidance s = 1',
}

rows = [r for r in json.loads((HERE / 'results.json').read_text())['rows'] if r['kind'] == 'generated']
fig = Figure(figsize=(7, 5))
ax = fig.subplots()
for (cfg, sg), label in GUIDANCE.items():
  curve = sorted(
    (r for r in rows if (r['settings']['guidance_scale'], r['settings'].get('self_guidance_scale', 0.0)) == (cfg, sg)),
    key=lambda r: r['settings']['temperature'],
  )
  x = [r['metrics']['fid_shapes']['value'] for r in curve]
  y = [100 * r['metrics']['object_accuracy']['value'] for r in curve]
  ax.plot(x, y, marker='o', label=label)
  for r, xi, yi in zip(curve, x, y):
    ax.annotate(f'T={r["settings"]["temperature"]:g}', (xi, yi), textcoords='offset points', xytext=(4, 4), fontsize=7)
ax.set_xlabel('FID-shapes (lower is better)')
ax.set_ylabel('object accuracy (%)')
ax.set_title('captioned shapes, uniform@16, 200 validation captions')
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(HERE / 'tradeoff.png', dpi=110)
