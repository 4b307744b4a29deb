"""Reports of a results dict: the markdown table and the trade-off plot (the paper's Fig. 1).

Everything is read from the results themselves (their `columns`, `compared` keys and `descriptions`), so a
saved results.json can be reported again without the job.
"""

import pathlib

import numpy as np

from tcts_jax.utils.files import atomic_write


def _fmt(value, column: dict, signed: bool = False) -> str:
  if value is None:
    return '—'
  return f'{value * column["scale"]:{"+" if signed else ""}.{column["digits"]}f}'


def _fmt_metric(metric, column: dict, signed: bool = False, interval: bool = True) -> str:
  if metric is None:
    return '—'
  text = _fmt(metric['value'], column, signed)
  if interval and 'ci95' in metric:
    low, high = (_fmt(v, column, signed) for v in metric['ci95'])
    text += f' [{low}, {high}]'
  return text


# The repair and break rates of the transitions hook (evaluators/__init__.py), shown like percent metrics.
RATES = (
  {'key': 'repair_rate', 'label': 'repaired', 'scale': 100, 'digits': 1},
  {'key': 'break_rate', 'label': 'broken', 'scale': 100, 'digits': 1},
)


def _transition_names(results: dict) -> list:
  """The evaluators that report transitions in some generated row, in row order."""
  rows = [r for r in results['rows'] if (r.get('diagnostics') or {}).get('transitions')]
  return list(dict.fromkeys(name for r in rows for name in r['diagnostics']['transitions']))


def _rate_label(rate: dict, name: str, names: list) -> str:
  return rate['label'] if len(names) == 1 else f'{rate["label"]} ({name})'


def diagnostics_table(results: dict) -> list:
  """Lines of the "Sampling diagnostics" section: one line per generated row with diagnostics."""
  rows = [r for r in results['rows'] if r.get('diagnostics')]
  if not rows:
    return []
  names = _transition_names(results)
  rates = [(name, rate) for name in names for rate in RATES]
  head = ['row', 'churn', 'revoked / image', 'entropy masked', 'entropy visible']
  head += [_rate_label(rate, name, names) for name, rate in rates]
  lines = ['## Sampling diagnostics', '', '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]

  def number(value, text):
    return '—' if value is None else text.format(value)

  for row in rows:
    d = row['diagnostics']['summary']
    cells = [
      row['name'],
      number(d['churn'], '{:.1%}'),
      number(d['revoked_per_image'], '{:.1f}'),
      number(d['entropy_masked'], '{:.2f}'),
      number(d['entropy_visible'], '{:.2f}'),
    ]
    transitions = row['diagnostics']['transitions']
    cells += [_fmt_metric(transitions.get(name, {}).get(rate['key']), rate) for name, rate in rates]
    lines.append('| ' + ' | '.join(cells) + ' |')
  sentences = [
    "Per generated row, means over images of the sampler's per-step diagnostics: churn = fraction of the "
    'visible tokens that stay kept but change value, averaged over steps; revoked = visible tokens re-masked, '
    "summed over steps; entropy (nats) of the step's draw at masked / visible positions, averaged over steps."
  ]
  if names:
    sentences.append(
      f'repaired = of the judged units ({", ".join(names)}) wrong in the prediction halfway (step (T-1)//2), '
      'the fraction right in the final image; broken = of those right halfway, the fraction wrong at the end '
      '(%, 95% bootstrap intervals).'
    )
  return lines + ['', ' '.join(sentences), '']


def markdown_table(results: dict) -> str:
  """The rows as a markdown table (95% bootstrap intervals in brackets), paired differences, sampling
  diagnostics, notes."""
  columns = results['columns']
  head = ['row'] + [c['label'] for c in columns] + ['s / image']
  split = f', {results["split"]} split' if results.get('split') else ''
  lines = [
    f'# Evaluation on {results["benchmark"]} ({results["num_images"]} images per row{split})',
    '',
    '| ' + ' | '.join(head) + ' |',
    '|' + '---|' * len(head),
  ]
  for row in results['rows']:
    cells = [row['name']] + [_fmt_metric(row['metrics'].get(c['key']), c, interval=c['with_interval']) for c in columns]
    seconds = row.get('seconds_per_image')
    cells.append('—' if seconds is None else f'{seconds * 1e3:.1f} ms')
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += [''] + [
    ' '.join(
      results['descriptions']
      + [f's / image: generation wall time per image on {results["devices"]} (compilation excluded).']
    ),
    '',
  ]
  compared = [c for c in columns if c['key'] in results['compared']]
  names = _transition_names(results)
  rates = [(name, rate) for name in names for rate in RATES]
  if results.get('comparisons') and (compared or rates):
    labels = [c['label'] for c in compared] + [_rate_label(rate, name, names) for name, rate in rates]
    lines += [
      '## Paired differences',
      '',
      'A − B on the same captions and seeds, with 95% paired bootstrap intervals (images resampled '
      'together): an interval that excludes 0 is a difference beyond the sampling noise.',
      '',
      '| A | B | ' + ' | '.join(labels) + ' |',
      '|---|---|' + '---|' * len(labels),
    ]
    for comparison in results['comparisons']:
      d, transitions = comparison['difference'], comparison.get('transitions', {})
      cells = [_fmt_metric(d.get(c['key']), c, signed=True) for c in compared]
      cells += [_fmt_metric(transitions.get(name, {}).get(rate['key']), rate, signed=True) for name, rate in rates]
      lines.append(f'| {comparison["a"]} | {comparison["b"]} | ' + ' | '.join(cells) + ' |')
    lines.append('')
  lines += diagnostics_table(results)
  lines += [f'- {note}' for note in results['notes']]
  return '\n'.join(lines) + '\n'


def _series(row: dict) -> str:
  """A generated row's line in the plot: its strategy and sampler settings (the name without the steps)."""
  settings = row.get('settings') or {}
  return row['strategy'] + (f'[{",".join(f"{k}={v}" for k, v in settings.items())}]' if settings else '')


def tradeoff_plot(results: dict, path: pathlib.Path, y_key: str, x_key: str) -> bool:
  """`y_key` (a per-image metric) against `x_key` (e.g. an FID) per strategy, or against the step count
  when a generated row lacks `x_key`. Returns False (and draws nothing) when no row has `y_key`."""
  # A bare Figure (no pyplot): no GUI backend, and a notebook calling this keeps its own backend.
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel (slow import)

  labels = {c['key']: c for c in results['columns']}
  generated = [r for r in results['rows'] if r['kind'] == 'generated']
  if y_key not in labels or not generated or any(r['metrics'].get(y_key) is None for r in generated):
    return False
  scale = labels[y_key]['scale']
  use_x = x_key in labels and all(r['metrics'].get(x_key) is not None for r in generated)
  x_of = (lambda r: r['metrics'][x_key]['value']) if use_x else (lambda r: r['steps'])
  fig = Figure(figsize=(7, 5))
  ax = fig.subplots()
  for strategy in dict.fromkeys(_series(r) for r in generated):
    rows = sorted((r for r in generated if _series(r) == strategy), key=lambda r: r['steps'])
    metric = [r['metrics'][y_key] for r in rows]
    y = np.array([m['value'] for m in metric]) * scale
    ci = np.array([m.get('ci95', [m['value']] * 2) for m in metric]) * scale
    ax.errorbar(
      [x_of(r) for r in rows],
      y,
      yerr=np.abs(np.stack([y - ci[:, 0], ci[:, 1] - y])),
      marker='o',
      capsize=3,
      label=strategy,
    )
    for r, yi in zip(rows, y):
      ax.annotate(f'{r["steps"]}', (x_of(r), yi), textcoords='offset points', xytext=(4, 4), fontsize=8)
  references = [r for r in results['rows'] if r['kind'] in ('real', 'vq') and r['metrics'].get(y_key) is not None]
  for r, (line, marker) in zip(references, (('--', '*'), (':', 'X'))):
    y = r['metrics'][y_key]['value'] * scale
    if use_x and r['metrics'].get(x_key) is not None:
      ax.plot([x_of(r)], [y], marker, color='k', markersize=10, linestyle='none', label=r['name'])
    else:
      ax.axhline(y, color='k', linestyle=line, linewidth=1, label=r['name'])
  ax.set_xlabel(f'{labels[x_key]["label"]} (lower is better)' if use_x else 'sampling steps')
  ax.set_ylabel(labels[y_key]['label'] + (' (%)' if scale == 100 else ''))
  ax.set_title(
    f'{results["benchmark"]}: {labels[y_key]["label"]} vs {labels[x_key]["label"] if use_x else "steps"} '
    f'({results["num_images"]} images, 95% CI)'
  )
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  with atomic_write(path) as f:
    fig.savefig(f, format='png', dpi=110)
  return True
