"""The eval job: generate for held-out captions per (strategy, steps, sampler settings), score, tabulate, plot.

For each entry of `config.eval.grid` ('strategy@steps', or 'strategy@steps[key=value,...]' with sampler
settings of its own: grid.py), `eval.num_images` images are generated for the records of the dataset's
`eval.split` ('test'; hyper-parameters are chosen on 'validation'), image i for record i % split size, in
batches sharded over all devices (generation.py: results depend neither on the batch size nor on the device
count, and every entry sees the same captions and seeds). A strategy that needs reference tokens (the
oracles) gets those of the held-out real image of each caption. Images are saved shard by shard with the
sampler's per-step diagnostics, and a rerun skips finished shards (shards.py). The images of
`eval.refinement.base` are then refined by each refinement method (paper Table 4).

Every row is scored by the evaluators of `eval.metrics`, found by name (evaluators/): per-image metrics get
bootstrap 95% intervals over images, set metrics (FID, MID) a number; an evaluator that cannot run here
(e.g. without its weights) is reported with the reason, never faked. For each `eval.compare` pair (A, B)
the paired difference A - B resamples the images of both rows together. Two reference rows: the dataset's
re-rendered scenes (an ideal generator, when the dataset can draw them) and their VQ reconstructions (the
ceiling any generator of tokens can reach).

Every generated row also reports its sampling diagnostics (diagnostics.py): per-step means of tokens
decided and revoked, churn and entropies, and, for the evaluators with a `transitions` hook, how often what
was wrong in the midpoint prediction is repaired by the end (and what was right is broken), with intervals
and paired differences.

Writes DIR/results.json (with a manifest of how it was made), DIR/results.md, DIR/tradeoff.png and, per
row, DIR/per_image/<row>.npz: the held-out record of each image, every evaluator's per-image values
(`<evaluator>/<key>`) and, for generated rows, the per-step diagnostics (`diagnostics/<key>`, (n, T)) and
transition counts (`transitions/<evaluator>/<key>`), for analyses of your own.
"""

import dataclasses
import hashlib
import json
import math
import pathlib
import sys
import time
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from tcts_jax import editing
from tcts_jax.api import TextToImage
from tcts_jax.data import get_dataset
from tcts_jax.evaluation import diagnostics, evaluators, grid, report, stats
from tcts_jax.evaluation.generation import DIAGNOSTICS, ShardGenerator, padded, per_image_arrays
from tcts_jax.evaluation.manifest import manifest
from tcts_jax.evaluation.shards import ShardStore, fingerprint, params_digest, say, shard_ranges
from tcts_jax.sampling.sampler import Sampler, sampler_config
from tcts_jax.utils.config import resolve_path
from tcts_jax.utils.files import atomic_write

REFINE_SETTINGS = ('rounds', 'revision_fraction', 'revision_steps', 'masked_fraction', 'masked_steps')


@dataclasses.dataclass
class Row:
  """One row of the results: its images, what they were made for, and how they score."""

  name: str
  kind: str  # 'generated', 'refined', 'real' or 'vq'
  images: Optional[np.ndarray]  # uint8 (n, S, S, 3); dropped once scored
  example: np.ndarray  # (n,) held-out record of each image
  strategy: Optional[str] = None
  steps: Optional[int] = None
  seconds_per_image: Optional[float] = None
  compile_seconds: Optional[float] = None
  settings: dict = dataclasses.field(default_factory=dict)  # the entry's sampler settings ([key=value,...])
  steps_diagnostics: dict = dataclasses.field(default_factory=dict)  # name -> (n, T) per image and step
  midpoint_tokens: Optional[np.ndarray] = None  # (n, N) the step-(T-1)//2 prediction; dropped once scored
  metrics: dict = dataclasses.field(default_factory=dict)
  values: dict = dataclasses.field(default_factory=dict)  # evaluator name -> per-image values
  transitions: dict = dataclasses.field(default_factory=dict)  # evaluator name -> per-image transition counts
  diagnostics: Optional[dict] = None  # diagnostics.summarise and the transition rates, for results.json

  def to_json(self) -> dict:
    out = {
      'name': self.name,
      'kind': self.kind,
      'strategy': self.strategy,
      'steps': self.steps,
      'num_images': len(self.example),
      'metrics': self.metrics,
      'seconds_per_image': self.seconds_per_image,
    }
    if self.kind == 'generated':
      out.update(settings=self.settings, compile_seconds=self.compile_seconds, diagnostics=self.diagnostics)
    return out


def _unavailable(message: str, skip_unavailable: bool, notes: list) -> None:
  """A row that cannot be computed here: an error, or (eval.skip_unavailable) a note that it was skipped."""
  if not skip_unavailable:
    raise ValueError(message)
  notes.append(f'skipped {message}.')


def checked_settings(base, settings: dict) -> dict:
  """An entry's [key=value,...] sampler settings, each a setting of `base` (the sampler config) with a value
  of its type; one-line errors naming the bad key or value."""
  for key, value in settings.items():
    if key not in base:
      raise ValueError(f'unknown sampler setting {key!r}; the settings are {", ".join(sorted(base))}')
    default = base[key]
    kind = type(default)
    fits = isinstance(value, bool) == isinstance(default, bool) and (
      isinstance(value, kind) or (kind is float and isinstance(value, int))
    )
    if default is not None and not fits:
      raise ValueError(
        f'bad value for sampler setting {key}: {value!r} is not of type {kind.__name__} (default {default!r})'
      )
  return settings


def entry_sampler(t2i: TextToImage, entry: grid.Entry) -> Sampler:
  """The sampler of a grid entry (with its per-step diagnostics); one-line errors for bad settings."""
  try:
    base = t2i.config.sampler
    overrides = dict(checked_settings(base, entry.settings), strategy=entry.strategy, steps=entry.steps)
    return Sampler(t2i.model, sampler_config(base, **overrides), t2i.selector, diagnostics=True)
  except (ValueError, TypeError) as e:
    raise ValueError(f'eval.grid entry {entry.name!r}: {str(e).splitlines()[0]}') from None


def prepare_entries(t2i: TextToImage, entries, skip_unavailable: bool, notes: list) -> list:
  """[(entry, sampler)] after validating every entry, before anything is generated."""
  out = []
  for entry in entries:
    sampler = entry_sampler(t2i, entry)
    if sampler.needs_selector and not editing.has_selector(t2i):
      _unavailable(
        f'{entry.name}: needs TCTS selector weights (selector.safetensors or eval.selector_weights)',
        skip_unavailable,
        notes,
      )
      continue
    out.append((entry, sampler))
  return out


def prepare_refinement(t2i, ev, entries, skip_unavailable: bool, notes: list):
  """(base Entry or None, [(mode, chooser)]) after validating eval.refinement, before anything is generated."""
  rf = ev.get('refinement')
  if rf is None or not rf.base:
    return None, []
  methods = grid.parse_refine_methods(rf.methods)
  base = next((e for e in entries if e.name == grid.normalise_name(rf.base)), None)
  if base is None:
    raise ValueError(f'eval.refinement.base {rf.base!r} is not an eval.grid entry ({[e.name for e in entries]})')
  kept = []
  for mode, chooser in methods:
    if chooser == 'selector' and not editing.has_selector(t2i):
      _unavailable(f'refinement {mode}:{chooser} needs TCTS selector weights', skip_unavailable, notes)
      continue
    kept.append((mode, chooser))
  return base, kept


def score(row: Row, scorers: dict, missing_keys, ev, mid_images=None) -> Row:
  """Fills `row.metrics` (every evaluator's numbers, None for the unavailable ones) and `row.values`; for a
  generated row (`mid_images`: its decoded midpoint tokens) also `row.transitions` and `row.diagnostics`."""
  for name, scorer in scorers.items():
    values = scorer.per_image(row.images, row.example)
    if values:
      row.values[name] = values
      row.metrics.update(
        stats.bootstrap(lambda idx, s=scorer, v=values: s.pool(v, idx), len(row.images), ev.bootstrap, ev.seed)
      )
    row.metrics.update({k: {'value': float(v)} for k, v in scorer.per_row(row.images, row.example).items()})
    counts = scorer.transitions(mid_images, row.images, row.example) if mid_images is not None else None
    if counts:
      row.transitions[name] = {k: np.asarray(counts[k], np.float64) for k in evaluators.TRANSITIONS}
  row.metrics.update({k: None for k in missing_keys})
  if row.steps_diagnostics:
    row.diagnostics = diagnostics.summarise(row.steps_diagnostics)
    row.diagnostics['transitions'] = {
      name: diagnostics.transition_summary(counts, ev.bootstrap, ev.seed) for name, counts in row.transitions.items()
    }
  return row


def comparison_rows(pairs, rows: dict, scorers: dict, ev, notes: list) -> list:
  """Paired differences A - B (stats.paired_difference) for the pairs whose two rows were both run."""
  out = []
  for a, b in pairs:
    missing = [name for name in (a, b) if name not in rows]
    if missing:
      notes.append(f'skipped comparison {a} - {b}: no row {missing[0]} in this run.')
      continue
    if not np.array_equal(rows[a].example, rows[b].example):
      raise ValueError(f'rows {a} and {b} were made for different records; they cannot be paired')
    difference = {}
    for name, scorer in scorers.items():
      if name in rows[a].values:
        difference.update(
          stats.paired_difference(scorer.pool, rows[a].values[name], rows[b].values[name], ev.bootstrap, ev.seed)
        )
    comparison = {'a': a, 'b': b, 'difference': difference}
    transitions = {
      name: stats.paired_difference(
        evaluators.transition_rates, rows[a].transitions[name], rows[b].transitions[name], ev.bootstrap, ev.seed
      )
      for name in rows[a].transitions
      if name in rows[b].transitions
    }
    if transitions:  # repair and break rates, A - B
      comparison['transitions'] = transitions
    out.append(comparison)
  return out


def refine_images(t2i, mode: str, chooser: str, rf, tokens, captions, rng):
  """One batch of refined tokens and uint8 images (editing.refine_revision / refine_masked)."""
  if mode == 'revision':
    out = editing.refine_revision(
      t2i,
      tokens,
      captions,
      rng,
      rounds=rf.rounds,
      fraction=rf.revision_fraction,
      chooser=chooser,
      steps=rf.revision_steps,
    )
  else:
    out = editing.refine_masked(
      t2i, tokens, captions, rng, fraction=rf.masked_fraction, chooser=chooser, steps=rf.masked_steps
    )
  return out.tokens, out.images


def refinement(t2i, base: dict, mode: str, chooser: str, ev, captions):
  """compute(indices) for the ShardStore: the base row's images `indices` refined in batches of
  eval.batch_size (the last one padded) on the default device; the batch starting at image i uses the rng
  fold_in(key(seed + 1), i), so a rerun gives the same images."""
  position = {int(i): j for j, i in enumerate(base['indices'])}

  def compute(indices):
    rows = np.array([position[int(i)] for i in indices])
    tokens, images, seconds = [], [], 0.0
    for start in range(0, len(indices), ev.batch_size):
      batch = padded(rows[start : start + ev.batch_size], ev.batch_size)
      rng = jax.random.fold_in(jax.random.key(ev.seed + 1), int(indices[start]))
      t0 = time.perf_counter()
      tok, img = refine_images(
        t2i,
        mode,
        chooser,
        ev.refinement,
        base['tokens'][batch],
        [captions[int(base['indices'][r]) % len(captions)] for r in batch],
        rng,
      )
      seconds += time.perf_counter() - t0
      n = min(ev.batch_size, len(indices) - start)
      tokens.append(tok[:n])
      images.append(img[:n])
    return {
      'tokens': np.concatenate(tokens),
      'images': np.concatenate(images),
      'seconds': seconds,
      'slots': len(indices) + (-len(indices)) % ev.batch_size,
    }

  return compute


def reference_images(t2i, dataset, held_out, example, ev, notes: list) -> list:
  """[(name, kind, images)]: the dataset's ideal images for the records (when it can draw them) and their
  VQ reconstructions (the ceiling the tokenizer allows), one per generated image."""
  real = dataset.reference_images(held_out, example, ev.seed)
  out = []
  if real is None:
    notes.append(
      f'no "real" reference row: dataset {dataset.name} cannot draw new images of its captions; the VQ '
      'row reconstructs the held-out images themselves.'
    )
    real = held_out.images[example]
  else:
    out.append(('real (re-rendered)', 'real', real))
  vq = decode(t2i, tokenize(t2i, real))
  return out + [('VQ reconstruction', 'vq', vq)]


def save_per_image(path: pathlib.Path, row: Row) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  arrays = {f'{name}/{key}': v for name, values in row.values.items() for key, v in values.items()}
  arrays.update({f'diagnostics/{key}': v for key, v in row.steps_diagnostics.items()})
  arrays.update({f'transitions/{name}/{k}': v for name, counts in row.transitions.items() for k, v in counts.items()})
  with atomic_write(path) as f:
    np.savez(f, example=row.example, **arrays)


def _check(ev) -> None:
  for key in ('num_images', 'batch_size', 'shard_size', 'bootstrap'):
    if ev[key] < 1:
      raise ValueError(f'eval.{key} must be >= 1, got {ev[key]}')
  for key, value in ev.items():
    if isinstance(value, float) and not math.isfinite(value):
      raise ValueError(f'eval.{key} must be finite, got {value}')


def check_split(dataset, split: str) -> None:
  splits = list(dataset.builder().info.splits)
  if split not in splits:
    raise ValueError(f'eval.split {split!r}: dataset {dataset.benchmark} has the splits {", ".join(splits)}')


def tokenize(t2i, images: np.ndarray) -> np.ndarray:
  """(n, N) VQ tokens of uint8 images, 256 at a time."""
  return np.concatenate([t2i.tokenize_images(images[i : i + 256]) for i in range(0, len(images), 256)])


def decode(t2i, tokens: np.ndarray) -> np.ndarray:
  """uint8 images of (n, N) tokens, 256 at a time."""
  return np.concatenate([t2i.decode_tokens(tokens[i : i + 256]) for i in range(0, len(tokens), 256)])


def write_outputs(results: dict, workdir: pathlib.Path, tradeoff) -> None:
  with atomic_write(workdir / 'results.json', 'w') as f:
    json.dump(results, f, indent=1)
  with atomic_write(workdir / 'results.md', 'w') as f:
    f.write(report.markdown_table(results))
  if not report.tradeoff_plot(results, workdir / 'tradeoff.png', tradeoff.y, tradeoff.x):
    say(f'no tradeoff.png: no generated row has {tradeoff.y!r} (eval.tradeoff.y)')
  say(f'wrote {workdir / "results.json"}, results.md and tradeoff.png')


def run_eval(config, workdir, weights: Optional[str] = None) -> dict:
  """The whole job (see the module docstring); returns the results dict also written to DIR/results.json."""
  if 'eval' not in config:
    raise ValueError('the config has no eval section (use e.g. --config=configs/shapes.py:eval)')
  ev = config.eval
  _check(ev)
  entries = grid.parse_grid(ev.grid)
  split = ev.get('split', 'test')
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f'workdir {workdir} exists and is not a directory')
  dataset = get_dataset(config.data)
  check_split(dataset, split)
  classes = evaluators.find_all(ev.metrics, dataset)
  notes, unavailable = [], {}
  # Held-out captions are data, not prompts: a word the model never saw is read as [UNK] (and counted below).
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.text.unknown_words = 'unk'
  t2i = TextToImage.load(config, weights, selector=ev.selector_weights)
  prepared = prepare_entries(t2i, entries, ev.skip_unavailable, notes)
  refine_base, refine_methods = prepare_refinement(t2i, ev, [e for e, _ in prepared], ev.skip_unavailable, notes)
  pairs = grid.parse_comparisons(ev.get('compare', ()))
  held_out = dataset.held_out(split, ev.num_images)
  scorers = evaluators.build(classes, evaluators.EvalContext(config, dataset, held_out), unavailable)
  notes += [f'{name} skipped: {why}.' for name, why in unavailable.items()]
  missing_keys = [c.key for name in unavailable for c in classes[name].columns]
  unknown = sorted({w for c in held_out.captions for w in t2i.models.text_tokenizer.unknown_words(c)})
  if unknown:
    notes.append(
      f'{len(unknown)} words of the held-out captions are not in the model vocabulary and are read as '
      f'[UNK]: {", ".join(unknown[:10])}{" ..." if len(unknown) > 10 else ""}.'
    )
  if ev.num_images > len(held_out):
    notes.append(f'{ev.num_images} images for {len(held_out)} {split} captions: captions repeat (other seeds).')
  workdir.mkdir(parents=True, exist_ok=True)

  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  params = jax.device_put(t2i.params, NamedSharding(mesh, P()))
  digests = {part: params_digest(p) for part, p in t2i.params.items()}
  text_ids = t2i.encode_prompts(held_out.captions)
  # The oracles' reference: the tokens of each caption's held-out real image.
  needs_reference = any(sampler.needs_reference for _, sampler in prepared)
  reference_tokens = tokenize(t2i, held_out.images) if needs_reference else None
  num_shards = len(shard_ranges(ev.num_images, ev.shard_size))
  rows = {}

  def add(row: Row) -> None:  # scored at once, so the job never holds more than one row's images
    mid_images = decode(t2i, row.midpoint_tokens) if row.midpoint_tokens is not None else None
    rows[row.name] = score(row, scorers, missing_keys, ev, mid_images)
    row.images = row.midpoint_tokens = None
    if jax.process_index() == 0:
      save_per_image(workdir / 'per_image' / f'{grid.dirname(row.name)}.npz', row)

  with tqdm(
    total=num_shards * (len(prepared) + len(refine_methods)),
    desc='eval shards',
    unit='shard',
    file=sys.stderr,
    disable=jax.process_index() > 0,
  ) as bar:
    store = ShardStore(workdir, ev.num_images, ev.shard_size, t2i.models.num_tokens, config.data.image_size, bar)
    for entry, sampler in prepared:
      parts = [p for p in digests if p != 'selector'] + (['selector'] if sampler.needs_selector else [])
      made_of = {
        'sampler': json.loads(sampler.cfg.to_json()),
        'seed': ev.seed,
        'weights': [digests[p] for p in parts],
      }
      generator = []  # compiled on the first shard that needs it

      def generate(indices, sampler=sampler, generator=generator):
        if not generator:
          generator.append(ShardGenerator(sampler, mesh, params, text_ids.shape[1], ev.batch_size, ev.seed))
        records = indices % len(held_out)
        reference = reference_tokens[records] if sampler.needs_reference else None
        return generator[0](indices, text_ids[records], reference)

      def fp(indices, made_of=made_of, sampler=sampler):  # what made these images: more images reuse them
        records = indices % len(held_out)
        inputs = {'captions': [held_out.captions[r] for r in records]}
        if sampler.needs_reference:
          inputs['reference'] = hashlib.sha256(reference_tokens[records].tobytes()).hexdigest()
        return fingerprint({**made_of, **inputs})

      out = store.collect(entry.dirname, fp, generate, per_image_arrays(sampler))
      add(
        Row(
          entry.name,
          'generated',
          out['images'],
          out['indices'] % len(held_out),
          entry.strategy,
          entry.steps,
          out['seconds_per_image'],
          generator[0].compile_seconds if generator else None,
          settings=entry.settings,
          steps_diagnostics={k: out[f'diagnostics/{k}'] for k in DIAGNOSTICS},
          midpoint_tokens=out['midpoint_tokens'],
        )
      )
      if entry == refine_base:
        base_out, base_fp = out, fp
    for mode, chooser in refine_methods:
      settings = {k: ev.refinement[k] for k in REFINE_SETTINGS}
      made_of = {
        'method': [mode, chooser],
        'settings': settings,
        'batch': ev.batch_size,
        'sampler': json.loads(t2i.config.sampler.to_json()),
        'selector': digests.get('selector') if chooser == 'selector' else None,
      }
      out = store.collect(
        f'refine_{mode}_{chooser}',
        lambda indices, made_of=made_of: fingerprint({**made_of, 'base': base_fp(indices)}),
        refinement(t2i, base_out, mode, chooser, ev, held_out.captions),
      )
      add(
        Row(
          f'{refine_base.name} + {mode} ({chooser})',
          'refined',
          out['images'],
          out['indices'] % len(held_out),
          seconds_per_image=out['seconds_per_image'],
        )
      )
  if ev.reference_rows:
    example = np.arange(ev.num_images) % len(held_out)
    for name, kind, images in reference_images(t2i, dataset, held_out, example, ev, notes):
      add(Row(name, kind, images, example))

  devices = jax.devices()
  columns = [dataclasses.asdict(c) for cls in classes.values() for c in cls.columns]
  results = {
    'benchmark': dataset.benchmark,
    'split': split,
    'num_images': ev.num_images,
    'seed': ev.seed,
    'devices': f'{len(devices)} x {devices[0].device_kind}',
    'weights': str(resolve_path(weights or config.weights)),
    'grid': [e.name for e in entries],
    'metrics': list(classes),
    'unavailable': unavailable,
    'columns': columns,
    'compared': [k for s in scorers.values() for k in s.compared],
    'descriptions': [s.description for s in scorers.values() if s.description],
    'rows': [row.to_json() for row in rows.values()],
    'comparisons': comparison_rows(pairs, rows, scorers, ev, notes),
    'notes': notes,
    'manifest': manifest(config, resolve_path(weights or config.weights), digests, ev.selector_weights, split),
  }
  if jax.process_index() == 0:
    write_outputs(results, workdir, ev.tradeoff)
  return results
