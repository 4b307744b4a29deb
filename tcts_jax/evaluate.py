r"""The eval job: generate for held-out captions per (strategy, steps), score, tabulate, plot.

  python -m tcts_jax.evaluate --config=configs/shapes.py:eval --workdir=workdirs/shapes/eval
  python -m tcts_jax.evaluate --config=configs/shapes.py:eval,smoke --workdir=/tmp/eval_smoke   # ~1 min

For each entry of `config.eval.grid` ('strategy@steps'), `eval.num_images` images are generated for the
captions of the 'test' split (image i: test example i % split size) in batches sharded over a 'data' mesh
axis of all devices. Image i's rng is fold_in(key(eval.seed), i) and every image is sampled on its own
(vmap over per-image keys), so results do not depend on the batch size or the number of devices, and
every grid entry sees the same captions and seeds (paired comparisons). Every `eval.shard_size` images
are written atomically to DIR/shards/<strategy>@<steps>/shard_XXXXX.npz (tokens, uint8 images,
per-image alignment scores, generation time); a rerun skips finished shards and recomputes unreadable
or stale ones (with a warning).

Then, per entry and for two reference rows, it computes the exact compositional alignment (metrics/alignment.py) with
bootstrap 95% confidence intervals over images, FID-shapes (NOT Inception FID; metrics/fid_shapes.py)
against the real test images when feature weights exist, CLIP score and MID when eval.clip_weights is
set, and the generation wall time per image (compilation excluded); for each `eval.compare` pair (A, B) of
rows, the paired difference A - B with a bootstrap interval that resamples the images of both rows together.
Writes DIR/results.json, DIR/results.md and DIR/tradeoff.png (alignment vs FID-shapes per strategy and step
count; vs steps when FID-shapes is unavailable). A metric that cannot be computed is skipped with a note,
never faked.

Reference rows: 'real (re-rendered)' draws each test caption's scene again with a fresh background and
jitter (an ideal generator: alignment ~100%, and its FID-shapes against the test images is the floor at
this N — comparing the test images with themselves would give a meaningless 0), and 'VQ reconstruction'
is those images through the tokenizer (the ceiling any generator of tokens can reach).
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import re
import sys
import tempfile
import time
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from ml_collections import config_flags
from tqdm import tqdm

from tcts_jax.api import TextToImage, resolve_path
from tcts_jax import editing
from tcts_jax.data import shapes, shapes_tfds
from tcts_jax.metrics import alignment, clip_score, mid
from tcts_jax.metrics.fid_shapes import NAME as FID_NAME, FIDShapes, fid_shapes_from_features

# Per-image alignment values kept in the shards; object-level ones are pooled over objects (SOA-I), the
# others averaged over images (GenEval), exactly as alignment.score_batch does.
OBJECT_LEVEL = ('object_accuracy', 'shape_accuracy', 'color_accuracy', 'size_accuracy', 'position_accuracy')
IMAGE_LEVEL = ('all_correct', 'count_correct', 'num_detected')
SCORE_KEYS = OBJECT_LEVEL + IMAGE_LEVEL + ('num_objects',)
REFINE_MODES = ('revision', 'masked')
MD_COLUMNS = (('object_accuracy', 'object acc.'), ('all_correct', 'all correct'), ('count_correct', 'count'),
              ('shape_accuracy', 'shape'), ('color_accuracy', 'colour'), ('size_accuracy', 'size'),
              ('position_accuracy', 'position'))


# ------------------------------------------------------------------------------------------ the grid


@dataclasses.dataclass(frozen=True)
class Entry:
  strategy: str
  steps: int

  @property
  def name(self) -> str:
    return f'{self.strategy}@{self.steps}'

  @property
  def dirname(self) -> str:  # schedules like 'uniform:8,random_revoke:8' hold characters paths should not
    return re.sub(r'[^A-Za-z0-9_.@-]', '_', self.name)


def parse_grid(grid) -> list[Entry]:
  """'strategy@steps' strings or (strategy, steps) pairs -> Entries; one-line errors for bad ones."""
  entries = []
  for item in grid:
    if isinstance(item, str):
      strategy, sep, steps = item.rpartition('@')
      if not sep or not strategy or not steps.strip().isdigit():
        raise ValueError(f'bad eval.grid entry {item!r}; expected "strategy@steps", e.g. "purity@16"')
    elif isinstance(item, (tuple, list)) and len(item) == 2 and str(item[1]).isdigit():
      strategy, steps = item
    else:
      raise ValueError(f'bad eval.grid entry {item!r}; expected "strategy@steps" or (strategy, steps)')
    entries.append(Entry(str(strategy).strip(), int(steps)))
  if not entries:
    raise ValueError('eval.grid is empty')
  names = [e.name for e in entries]
  if len(set(names)) != len(names):
    raise ValueError(f'duplicate eval.grid entries: {sorted({n for n in names if names.count(n) > 1})}')
  return entries


# ------------------------------------------------------------------------------------------ the data


@dataclasses.dataclass
class HeldOut:
  """The unique test examples the eval uses (image i is generated for example i % len(captions))."""
  captions: list
  images: np.ndarray       # (M, S, S, 3) uint8
  objects: np.ndarray      # (M, 3, 4) int32
  num_objects: np.ndarray  # (M,) int32


def read_split(config, split: str, count: int) -> HeldOut:
  """The first `count` records of a split (fewer if the split is smaller), in generation order."""
  source = shapes_tfds.build(config.data.config_name, config.data.data_dir).as_data_source(split)
  records = [source[i] for i in range(min(count, len(source)))]
  caption = lambda c: c.decode('utf-8') if isinstance(c, bytes) else str(c)
  return HeldOut(captions=[caption(r['caption']) for r in records],
                 images=np.stack([np.asarray(r['image'], np.uint8) for r in records]),
                 objects=np.stack([np.asarray(r['objects'], np.int32) for r in records]),
                 num_objects=np.array([r['num_objects'] for r in records], np.int32))


def rerender(objects, num_objects, seed: int, index: int, image_size: int) -> np.ndarray:
  """The scene of a caption drawn again with fresh nuisances (background, jitter): what an ideal generator
  could output for it. Independent of the test image, so FID-shapes against the test images is the floor
  that this sample size allows."""
  rng = np.random.default_rng([seed, index, 0x5eed])
  fresh = shapes.sample_scene(rng)
  n = int(num_objects)
  scene = dataclasses.replace(fresh, objects=shapes.scene_from_objects(objects, n),
                              jitter=tuple((int(dy), int(dx)) for dy, dx in rng.integers(-1, 2, size=(n, 2))))
  return shapes.render(scene, image_size)


def example_keys(seed: int, indices) -> np.ndarray:
  """(n, key words) uint32 key data: fold_in(key(seed), i) per global image index i."""
  base = jax.random.key(seed)
  return np.asarray(jax.vmap(lambda i: jax.random.key_data(jax.random.fold_in(base, i)))(jnp.asarray(indices)))


# ---------------------------------------------------------------------------------------- generation


def make_generate(sampler, mesh: Mesh):
  """jit(params, text_ids (B, L), key_data (B, 2)) -> tokens (B, N), uint8 images; batch split over 'data'.

  Each image is sampled alone (vmap of the batch-of-one sampler over per-image keys), so an image does
  not depend on which other images share its batch or device.
  """
  data, replicated = NamedSharding(mesh, P('data')), NamedSharding(mesh, P())

  def one(params, ids, key_data):
    out = sampler(params, ids[None], jax.random.wrap_key_data(key_data))
    return out.tokens[0], out.images[0]

  def generate(params, text_ids, key_data):
    tokens, images = jax.vmap(one, in_axes=(None, 0, 0))(params, text_ids, key_data)
    return tokens, jnp.round(jnp.clip(images, 0.0, 1.0) * 255).astype(jnp.uint8)  # as visualize.to_uint8

  return jax.jit(generate, in_shardings=(replicated, data, data), out_shardings=(data, data))


def to_global(x: np.ndarray, sharding) -> jax.Array:
  """A host array (the same on every process) as a global array with `sharding`."""
  return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


def to_host(x: jax.Array) -> np.ndarray:
  return np.asarray(x) if x.is_fully_addressable else np.asarray(multihost_utils.process_allgather(x, tiled=True))


def padded_batch_size(batch_size: int, num_devices: int) -> int:
  return -(-batch_size // num_devices) * num_devices


class ShardGenerator:
  """Generates the images of one grid entry, shard by shard (compiled once, ahead of time)."""

  def __init__(self, t2i: TextToImage, sampler, mesh: Mesh, params, batch_size: int, seed: int):
    self.params, self.seed = params, seed
    self.batch = padded_batch_size(batch_size, mesh.size)
    self.data = NamedSharding(mesh, P('data'))
    start = time.perf_counter()
    ids = jax.ShapeDtypeStruct((self.batch, t2i.models.word_tokenizer.max_length), jnp.int32, sharding=self.data)
    keys = jax.ShapeDtypeStruct((self.batch,) + example_keys(seed, [0]).shape[1:], jnp.uint32, sharding=self.data)
    self.compiled = make_generate(sampler, mesh).lower(params, ids, keys).compile()
    self.compile_seconds = time.perf_counter() - start

  def __call__(self, indices, text_ids) -> dict:
    """tokens, images and generation seconds for images `indices` with caption ids `text_ids` (n, L)."""
    tokens, images, seconds, slots = [], [], 0.0, 0
    for start in range(0, len(indices), self.batch):
      idx, ids = indices[start:start + self.batch], text_ids[start:start + self.batch]
      pad = self.batch - len(idx)  # padding repeats the last image; per-image keys make it harmless
      ids_p = np.concatenate([ids, np.repeat(ids[-1:], pad, 0)])
      keys = example_keys(self.seed, np.concatenate([idx, np.repeat(idx[-1:], pad)]))
      t0 = time.perf_counter()
      tok, img = self.compiled(self.params, to_global(ids_p, self.data), to_global(keys, self.data))
      tok, img = to_host(tok), to_host(img)  # waits for the device
      seconds += time.perf_counter() - t0
      slots += self.batch
      tokens.append(tok[:len(idx)])
      images.append(img[:len(idx)])
    return {'tokens': np.concatenate(tokens), 'images': np.concatenate(images), 'seconds': seconds, 'slots': slots}


# -------------------------------------------------------------------------------------------- shards


def shard_ranges(num_images: int, shard_size: int) -> list[np.ndarray]:
  return [np.arange(s, min(s + shard_size, num_images)) for s in range(0, num_images, shard_size)]


def shard_path(workdir, entry: Entry, shard: int) -> pathlib.Path:
  return pathlib.Path(workdir) / 'shards' / entry.dirname / f'shard_{shard:05d}.npz'


def save_shard(path: pathlib.Path, arrays: dict) -> None:
  """np.savez_compressed to a temp file in the same dir, then rename: a shard is whole or absent."""
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  try:
    with os.fdopen(fd, 'wb') as f:
      np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def load_shard(path: pathlib.Path, indices: np.ndarray, fingerprint: str, num_tokens: int, image_size: int):
  """(shard dict, None) if `path` is a finished shard of these settings, else (None, why not)."""
  if not path.exists():
    return None, None
  try:
    with np.load(path, allow_pickle=False) as f:
      shard = {k: f[k] for k in f.files}
    n = len(indices)
    expected = {'indices': (n,), 'tokens': (n, num_tokens), 'images': (n, image_size, image_size, 3),
                **{f'score_{k}': (n,) for k in SCORE_KEYS}, 'seconds': (), 'slots': (), 'fingerprint': ()}
    for key, shape in expected.items():
      if key not in shard or shard[key].shape != shape:
        return None, f'missing or misshaped {key!r}'
  except Exception as e:  # zip, header and decompression errors all mean "recompute"
    return None, f'unreadable ({type(e).__name__}: {str(e)[:80]})'
  if str(shard['fingerprint']) != fingerprint:
    return None, 'made with other settings (sampler, seed, data or weights)'
  if not np.array_equal(shard['indices'], indices):
    return None, 'holds other image indices (shard_size changed?)'
  return shard, None


def params_digest(params) -> str:
  """sha256 of every parameter's name, shape and bytes (a shard records the weights that made it)."""
  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0], key=lambda x: str(x[0])):
    leaf = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.shape}:{leaf.dtype}'.encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


def fingerprint(sampler, seed: int, data_cfg, part_digests: dict) -> str:
  """What makes a shard's content: the sampler settings, seed, data and the weights of the parts the sampler
  uses (a selector added later leaves non-TCTS shards valid); not the batch size or the devices."""
  parts = ['tokenizer', 'text', 'generator'] + (['selector'] if sampler.needs_selector else [])
  text = json.dumps({'sampler': json.loads(sampler.cfg.to_json()), 'seed': seed,
                     'data': [data_cfg.config_name, data_cfg.image_size],
                     'weights': [part_digests[p] for p in parts]}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def score_images(images, objects, num_objects) -> dict:
  """Per-image alignment values {key: (n,) float} (SCORE_KEYS) of uint8 images against ground truth."""
  per_image = alignment.score_batch(images, objects, num_objects)['per_image']
  return {k: np.asarray(per_image[k], np.float64) for k in SCORE_KEYS}


# ------------------------------------------------------------------------------------------- metrics


def pooled_alignment(scores: dict, idx: Optional[np.ndarray] = None) -> dict:
  """Means as score_batch reports them, over images `idx` (rows of a (B, n) bootstrap index, or all)."""
  idx = np.arange(len(scores['num_objects'])) if idx is None else idx
  w = scores['num_objects'][idx]
  out = {k: (scores[k][idx] * w).sum(-1) / np.maximum(w.sum(-1), 1.0) for k in OBJECT_LEVEL}
  out.update({k: scores[k][idx].mean(-1) for k in IMAGE_LEVEL})
  return out


def bootstrap(statistic, n: int, num_resamples: int, seed: int) -> dict:
  """{key: {'mean', 'ci95': [low, high]}} of `statistic(idx)` ({key: value}, idx None = all images, else a
  (B, n) index of resampled images): percentile bootstrap over images, resampled with replacement."""
  out = {k: {'mean': float(v)} for k, v in statistic(None).items()}
  if num_resamples > 0 and n > 1:
    resampled = statistic(np.random.default_rng(seed).integers(0, n, (num_resamples, n)))
    for k, v in resampled.items():
      out[k]['ci95'] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))]
  return out


def bootstrap_alignment(scores: dict, num_resamples: int, seed: int) -> dict:
  """Pooled alignment of one row with its 95% bootstrap interval per metric."""
  return bootstrap(lambda idx: pooled_alignment(scores, idx), len(scores['num_objects']), num_resamples, seed)


def paired_difference(a: dict, b: dict, num_resamples: int, seed: int) -> dict:
  """Alignment of row A minus row B on the same images, resampling the images of both together.

  Grid rows share captions and seeds, so the spread between images partly cancels (the more alike the two
  rows' images, the more): this interval, not the overlap of the rows' own ones, answers "does A beat B".
  """
  if not np.array_equal(a['num_objects'], b['num_objects']):
    raise ValueError('paired rows must score the same images')

  def statistic(idx):
    pa, pb = pooled_alignment(a, idx), pooled_alignment(b, idx)
    return {k: pa[k] - pb[k] for k in pa}
  return bootstrap(statistic, len(a['num_objects']), num_resamples, seed)


class ClipFeatures:
  """CLIP image / text embeddings (HF safetensors CLIP dir) for CLIP-S and MID."""

  def __init__(self, path, batch_size: int = 64):
    from transformers import CLIPTokenizer  # pylint: disable=import-outside-toplevel (heavy, optional)
    from tcts_jax.models import clip  # pylint: disable=import-outside-toplevel
    self.clip = clip
    self.config, self.text_params, self.vision_params = clip.load_clip_from_safetensors(str(path))
    if self.config.text is None or self.config.vision is None:
      raise ValueError(f'CLIP checkpoint {path} lacks a text or vision tower')
    self.tokenizer = CLIPTokenizer.from_pretrained(str(path))
    self.batch_size = batch_size

  def images(self, images) -> np.ndarray:
    size = self.config.vision.image_size
    return np.concatenate([np.asarray(self.clip.encode_image(
        self.vision_params, self.clip.preprocess_images(images[i:i + self.batch_size], size), self.config))
        for i in range(0, len(images), self.batch_size)])

  def texts(self, captions) -> np.ndarray:
    length = min(77, self.config.text.max_position_embeddings)
    ids = self.tokenizer(list(captions), padding='max_length', max_length=length, truncation=True,
                         return_tensors='np')['input_ids']
    return np.concatenate([np.asarray(self.clip.encode_text(self.text_params, ids[i:i + self.batch_size], self.config))
                           for i in range(0, len(ids), self.batch_size)])


@dataclasses.dataclass
class MetricTools:
  """What the optional metrics need (None when unavailable), and the reference features."""
  fid: Optional[FIDShapes] = None
  clip: Optional[ClipFeatures] = None
  real_fid_features: Optional[np.ndarray] = None   # (M, D) test images
  real_clip_images: Optional[np.ndarray] = None    # (M, d) test images
  clip_texts: Optional[np.ndarray] = None          # (M, d) test captions
  mid_eps: float = 5e-4


def image_metrics(tools: MetricTools, images, example) -> dict:
  """FID-shapes / CLIP-S / MID of uint8 `images`, image i made for test example `example[i]` (None: unavailable)."""
  out = {'fid_shapes': None, 'clip_score': None, 'mid': None}
  if tools.fid is not None:
    out['fid_shapes'] = fid_shapes_from_features(tools.fid.features(images), tools.real_fid_features)
  if tools.clip is not None:
    gen, texts = tools.clip.images(images), tools.clip_texts[example]
    out['clip_score'] = clip_score(gen, texts)[0]
    out['mid'] = mid(tools.real_clip_images[example], texts, gen, eps=tools.mid_eps)[0]
  return out


# ------------------------------------------------------------------------------------------- outputs


def write_text(path: pathlib.Path, text: str) -> None:
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
  with os.fdopen(fd, 'w') as f:
    f.write(text)
  os.replace(tmp, path)


def _fmt(value, digits=1, scale=100.0, signed=False) -> str:
  return '—' if value is None else f'{value * scale:{"+" if signed else ""}.{digits}f}'


def _fmt_metric(m: dict, signed=False) -> str:
  mean = _fmt(m['mean'], signed=signed)
  if 'ci95' not in m:
    return mean
  low, high = (_fmt(v, signed=signed) for v in m['ci95'])
  return f'{mean} [{low}, {high}]'


def markdown_table(results: dict) -> str:
  """The results as a markdown table (alignment in %, 95% bootstrap CI in brackets) plus notes."""
  head = ['row'] + [label for _, label in MD_COLUMNS] + [FID_NAME, 'CLIP-S', 'MID', 's / image']
  lines = [f"# Evaluation on {results['benchmark']} ({results['num_images']} images per row)", '',
           '| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for row in results['rows']:
    a = row['alignment']
    cells = [row['name']] + [_fmt_metric(a[k]) if k in ('object_accuracy', 'all_correct') else _fmt(a[k]['mean'])
                             for k, _ in MD_COLUMNS]
    cells += [_fmt(row['fid_shapes'], 2, 1.0), _fmt(row['clip_score'], 4, 1.0), _fmt(row['mid'], 2, 1.0),
              '—' if row.get('seconds_per_image') is None else f"{row['seconds_per_image'] * 1e3:.1f} ms"]
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', f'Alignment: exact compositional checker (metrics/alignment.py), in %; object-level columns pooled '
            f'over objects, all correct / count over images. {FID_NAME} is NOT Inception FID: it uses our '
            'captioned-shapes feature network and is comparable only at equal N. s / image: generation wall '
            f"time per image on {results['devices']} (compilation excluded).", '']
  if results.get('comparisons'):
    lines += ['## Paired differences', '',
              'A − B on the same captions and seeds, in points, with 95% paired bootstrap intervals (images '
              'resampled together): an interval that excludes 0 is a difference beyond the sampling noise.', '',
              '| A | B | object acc. | all correct |', '|---|---|---|---|']
    for c in results['comparisons']:
      d = c['difference']
      lines.append(f"| {c['a']} | {c['b']} | {_fmt_metric(d['object_accuracy'], signed=True)} | "
                   f"{_fmt_metric(d['all_correct'], signed=True)} |")
    lines.append('')
  lines += [f'- {note}' for note in results['notes']]
  return '\n'.join(lines) + '\n'


def tradeoff_plot(results: dict, path: pathlib.Path) -> None:
  """Object accuracy vs FID-shapes (vs steps without FID-shapes) per strategy: the paper's Fig. 1."""
  # A bare Figure (no pyplot): no GUI backend, and a notebook calling this keeps its own backend.
  from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel
  generated = [r for r in results['rows'] if r['kind'] == 'generated']
  use_fid = bool(generated) and all(r['fid_shapes'] is not None for r in generated)
  x_of = (lambda r: r['fid_shapes']) if use_fid else (lambda r: r['steps'])
  fig = Figure(figsize=(7, 5))
  ax = fig.subplots()
  for strategy in dict.fromkeys(r['strategy'] for r in generated):
    rows = sorted((r for r in generated if r['strategy'] == strategy), key=lambda r: r['steps'])
    acc = [r['alignment']['object_accuracy'] for r in rows]
    y = np.array([a['mean'] for a in acc]) * 100
    err = np.array([[a['mean'] - a.get('ci95', [a['mean']] * 2)[0], a.get('ci95', [a['mean']] * 2)[1] - a['mean']]
                    for a in acc]).T * 100
    ax.errorbar([x_of(r) for r in rows], y, yerr=err, marker='o', capsize=3, label=strategy)
    for r, yi in zip(rows, y):
      ax.annotate(f"{r['steps']}", (x_of(r), yi), textcoords='offset points', xytext=(4, 4), fontsize=8)
  for r, (line, marker) in zip([r for r in results['rows'] if r['kind'] in ('real', 'vq')], (('--', '*'), (':', 'X'))):
    y = r['alignment']['object_accuracy']['mean'] * 100
    if use_fid and r['fid_shapes'] is not None:
      ax.plot([r['fid_shapes']], [y], marker, color='k', markersize=10, linestyle='none', label=r['name'])
    else:
      ax.axhline(y, color='k', linestyle=line, linewidth=1, label=r['name'])
  ax.set_xlabel(f'{FID_NAME} (lower is better; not Inception FID)' if use_fid else 'sampling steps')
  ax.set_ylabel('object accuracy (%)')
  ax.set_title(f"{results['benchmark']}: alignment vs {'FID-shapes' if use_fid else 'steps'} "
               f"({results['num_images']} images, 95% CI)")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.png')
  os.close(fd)
  fig.savefig(tmp, dpi=110)
  os.replace(tmp, path)


# ----------------------------------------------------------------------------------------- the job


def _say(message: str) -> None:
  if jax.process_index() == 0:
    tqdm.write(message, file=sys.stderr)


def load_tools(config, ev, heldout: HeldOut, num_images: int, notes: list) -> MetricTools:
  """Loads the optional metric networks; a missing one adds a note instead (never a fake number)."""
  tools = MetricTools(mid_eps=ev.mid_eps)
  source = resolve_path(ev.features_weights) if ev.features_weights else None
  if source is not None and ((source / 'features.safetensors').is_file() or (source / 'checkpoints').is_dir()):
    tools.fid = FIDShapes.load(source, config)
    n, dim = min(num_images, len(heldout.captions)), tools.fid.feature_dim
    if n <= dim:  # a singular covariance: refuse rather than report a meaningless number
      raise ValueError(f'{FID_NAME} needs more images than its {dim} feature dimensions, got {n} (eval.num_images='
                       f'{num_images}, {len(heldout.captions)} test captions); raise eval.num_images or set '
                       'eval.features_weights=None')
    tools.real_fid_features = tools.fid.features(heldout.images)
  else:
    where = 'eval.features_weights is not set' if not source else f'no features weights in {source}'
    notes.append(f'{FID_NAME} skipped: {where} (train them: python -m tcts_jax.train '
                 '--config=configs/shapes.py:features --workdir=...).')
  if ev.clip_weights:
    path = resolve_path(ev.clip_weights)
    if not (path / 'config.json').is_file():
      notes.append(f'CLIP-S and MID skipped: no CLIP checkpoint (config.json) at {path}.')
    else:
      tools.clip = ClipFeatures(path)
      tools.real_clip_images = tools.clip.images(heldout.images)
      tools.clip_texts = tools.clip.texts(heldout.captions)
      notes.append(f'CLIP-S / MID with {path}; MID ridge eps={ev.mid_eps}.')
  else:
    notes.append('CLIP-S and MID skipped: eval.clip_weights is not set (a HF CLIP safetensors dir).')
  return tools


def _unavailable(message: str, skip_unavailable: bool, notes: list) -> None:
  """A row that cannot be computed here: an error, or (eval.skip_unavailable) a note that it was skipped."""
  if not skip_unavailable:
    raise ValueError(message)
  notes.append(f'skipped {message}.')


def prepare_entries(t2i: TextToImage, entries, skip_unavailable: bool, notes: list):
  """[(entry, sampler)] after validating every entry, before anything is generated."""
  out = []
  for entry in entries:
    try:
      sampler = t2i.sampler(strategy=entry.strategy, steps=entry.steps)
    except ValueError as e:
      raise ValueError(f'eval.grid entry {entry.name!r}: {e}') from None
    if sampler.needs_selector and not editing.has_selector(t2i):
      _unavailable(f'{entry.name}: needs TCTS selector weights (selector.safetensors or eval.selector_weights)',
                   skip_unavailable, notes)
      continue
    out.append((entry, sampler))
  return out


def run_entry(t2i, entry, sampler, mesh, params, ev, heldout, text_ids, workdir, digests, bar) -> dict:
  """Generates the missing shards of one grid entry; returns the concatenated shards."""
  fp = fingerprint(sampler, ev.seed, t2i.config.data, digests)
  m = len(heldout.captions)
  generator, shards = None, []
  for s, indices in enumerate(shard_ranges(ev.num_images, ev.shard_size)):
    path = shard_path(workdir, entry, s)
    shard, why = load_shard(path, indices, fp, t2i.models.num_tokens, t2i.config.data.image_size)
    if shard is None:
      if why:
        _say(f'warning: {path} {why}; recomputing it')
      generator = generator or ShardGenerator(t2i, sampler, mesh, params, ev.batch_size, ev.seed)
      example = indices % m  # the test caption of each image
      out = generator(indices, text_ids[example])
      scores = score_images(out['images'], heldout.objects[example], heldout.num_objects[example])
      shard = {'indices': indices, 'tokens': out['tokens'].astype(np.int32), 'images': out['images'],
               **{f'score_{k}': v for k, v in scores.items()}, 'seconds': np.float64(out['seconds']),
               'slots': np.int64(out['slots']), 'fingerprint': np.array(fp)}
      if jax.process_index() == 0:
        save_shard(path, shard)
    shards.append(shard)
    bar.set_postfix_str(entry.name)
    bar.update(1)
  cat = {k: np.concatenate([sh[k] for sh in shards]) for k in ('indices', 'tokens', 'images')}
  cat['scores'] = {k: np.concatenate([sh[f'score_{k}'] for sh in shards]) for k in SCORE_KEYS}
  cat['seconds_per_image'] = float(sum(sh['seconds'] for sh in shards) / sum(sh['slots'] for sh in shards))
  cat['compile_seconds'] = None if generator is None else generator.compile_seconds
  return cat


def reference_rows(t2i, ev, heldout, tools, num_images) -> list:
  """Scores of an ideal generator (the test captions' scenes re-rendered with fresh backgrounds and jitter,
  one per generated image) and of its VQ reconstructions (the ceiling the tokenizer allows)."""
  example = np.arange(num_images) % len(heldout.captions)
  size = t2i.config.data.image_size
  real = np.stack([rerender(heldout.objects[e], heldout.num_objects[e], ev.seed, i, size) for i, e in enumerate(example)])
  vq = np.concatenate([t2i.decode_tokens(t2i.tokenize_images(real[i:i + 256])) for i in range(0, num_images, 256)])
  rows = []
  for name, kind, images in (('real (re-rendered)', 'real', real), ('VQ reconstruction', 'vq', vq)):
    scores = score_images(images, heldout.objects[example], heldout.num_objects[example])
    row = {'name': name, 'kind': kind, 'strategy': None, 'steps': None, 'num_images': num_images,
           'alignment': bootstrap_alignment(scores, ev.bootstrap, ev.seed), 'seconds_per_image': None}
    row.update(image_metrics(tools, images, example))
    rows.append(row)
  return rows


def parse_refine_methods(methods) -> list[tuple[str, str]]:
  """'<revision|masked>:<selector|random>' strings -> (mode, chooser) pairs; one-line errors for bad ones."""
  out = []
  for method in methods:
    mode, _, chooser = str(method).partition(':')
    if mode not in REFINE_MODES or chooser not in editing.CHOOSERS:
      raise ValueError(f'bad eval.refinement method {method!r}; expected "<{"|".join(REFINE_MODES)}>:'
                       f'<{"|".join(editing.CHOOSERS)}>", e.g. "revision:selector"')
    out.append((mode, chooser))
  return out


def prepare_refinement(t2i, ev, entries, skip_unavailable: bool, notes: list):
  """(base Entry or None, [(mode, chooser)]) after validating eval.refinement, before anything is generated."""
  rf = ev.get('refinement')
  if rf is None or not rf.base:
    return None, []
  methods = parse_refine_methods(rf.methods)
  base = next((e for e in entries if e.name == rf.base), None)
  if base is None:
    raise ValueError(f'eval.refinement.base {rf.base!r} is not an eval.grid entry ({[e.name for e in entries]})')
  kept = []
  for mode, chooser in methods:
    if chooser == 'selector' and not editing.has_selector(t2i):
      _unavailable(f'refinement {mode}:{chooser} needs TCTS selector weights', skip_unavailable, notes)
      continue
    kept.append((mode, chooser))
  return base, kept


def parse_comparisons(compare) -> list[tuple[str, str]]:
  """eval.compare: (A, B) pairs of row names -> [(A, B)]; a pair naming a row this run does not have is
  skipped with a note later (so a narrowed --config.eval.grid needs no matching edit of the pairs)."""
  pairs = []
  for pair in compare:
    if isinstance(pair, str) or len(pair) != 2:
      raise ValueError(f'bad eval.compare pair {pair!r}; expected (row name A, row name B), e.g. '
                       "('tcts_fas@16', 'random_revoke@16')")
    pairs.append((str(pair[0]), str(pair[1])))
  return pairs


def comparison_rows(pairs, scores: dict, ev, notes: list) -> list:
  """Paired differences A - B (paired_difference) for the pairs whose two rows were both run."""
  out = []
  for a, b in pairs:
    missing = [name for name in (a, b) if name not in scores]
    if missing:
      notes.append(f'skipped comparison {a} - {b}: no row {missing[0]} in this run.')
      continue
    out.append({'a': a, 'b': b, 'difference': paired_difference(scores[a], scores[b], ev.bootstrap, ev.seed)})
  return out


def refine_images(t2i, mode: str, chooser: str, rf, tokens, captions, rng):
  """One batch of refined tokens and uint8 images (editing.refine_revision / refine_masked)."""
  if mode == 'revision':
    out = editing.refine_revision(t2i, tokens, captions, rng, rounds=rf.rounds, fraction=rf.revision_fraction,
                                  chooser=chooser, steps=rf.revision_steps)
  else:
    out = editing.refine_masked(t2i, tokens, captions, rng, fraction=rf.masked_fraction, chooser=chooser,
                                steps=rf.masked_steps)
  return out.tokens, out.images


def run_refinement(t2i, base_out, mode, chooser, ev, heldout, workdir, base_fp, digests, bar) -> dict:
  """Refines the base entry's images shard by shard (saved and resumed like generated shards).

  Batches of eval.batch_size images (the last one padded) on the default device; batch b's rng is
  fold_in(key(seed + 1), first image index), so a rerun gives the same images.
  """
  rf = ev.refinement
  settings = {k: rf[k] for k in ('rounds', 'revision_fraction', 'revision_steps', 'masked_fraction', 'masked_steps')}
  text = json.dumps({'base': base_fp, 'method': [mode, chooser], 'settings': settings, 'batch': ev.batch_size,
                     'sampler': json.loads(t2i.config.sampler.to_json()),
                     'selector': digests.get('selector') if chooser == 'selector' else None}, sort_keys=True)
  fp = hashlib.sha256(text.encode()).hexdigest()[:16]
  entry_dir = f'refine_{mode}_{chooser}'
  m, shards = len(heldout.captions), []
  for s, indices in enumerate(shard_ranges(ev.num_images, ev.shard_size)):
    path = pathlib.Path(workdir) / 'shards' / entry_dir / f'shard_{s:05d}.npz'
    shard, why = load_shard(path, indices, fp, t2i.models.num_tokens, t2i.config.data.image_size)
    if shard is None:
      if why:
        _say(f'warning: {path} {why}; recomputing it')
      position = {int(i): j for j, i in enumerate(base_out['indices'])}
      rows = np.array([position[int(i)] for i in indices])
      tokens, images, seconds = [], [], 0.0
      for start in range(0, len(indices), ev.batch_size):
        sel = rows[start:start + ev.batch_size]
        pad = ev.batch_size - len(sel)
        sel_p = np.concatenate([sel, np.repeat(sel[-1:], pad)])
        captions = [heldout.captions[int(base_out['indices'][r]) % m] for r in sel_p]
        rng = jax.random.fold_in(jax.random.key(ev.seed + 1), int(indices[start]))
        t0 = time.perf_counter()
        tok, img = refine_images(t2i, mode, chooser, rf, base_out['tokens'][sel_p], captions, rng)
        seconds += time.perf_counter() - t0
        tokens.append(tok[:len(sel)])
        images.append(img[:len(sel)])
      images = np.concatenate(images)
      example = indices % m
      scores = score_images(images, heldout.objects[example], heldout.num_objects[example])
      shard = {'indices': indices, 'tokens': np.concatenate(tokens).astype(np.int32), 'images': images,
               **{f'score_{k}': v for k, v in scores.items()}, 'seconds': np.float64(seconds),
               'slots': np.int64(len(indices) + (-len(indices)) % ev.batch_size), 'fingerprint': np.array(fp)}
      if jax.process_index() == 0:
        save_shard(path, shard)
    shards.append(shard)
    bar.set_postfix_str(entry_dir)
    bar.update(1)
  cat = {k: np.concatenate([sh[k] for sh in shards]) for k in ('indices', 'tokens', 'images')}
  cat['scores'] = {k: np.concatenate([sh[f'score_{k}'] for sh in shards]) for k in SCORE_KEYS}
  cat['seconds_per_image'] = float(sum(sh['seconds'] for sh in shards) / sum(sh['slots'] for sh in shards))
  return cat


def run_eval(config, workdir, weights: Optional[str] = None) -> dict:
  """The whole job (see the module docstring); returns the results dict also written to DIR/results.json."""
  if 'eval' not in config:
    raise ValueError('the config has no eval section (use e.g. --config=configs/shapes.py:eval)')
  ev = config.eval
  for key in ('num_images', 'batch_size', 'shard_size'):
    if ev[key] < 1:
      raise ValueError(f'eval.{key} must be >= 1, got {ev[key]}')
  entries = parse_grid(ev.grid)
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f'workdir {workdir} exists and is not a directory')
  notes = []
  t2i = TextToImage.load(config, weights, selector=ev.selector_weights)
  prepared = prepare_entries(t2i, entries, ev.skip_unavailable, notes)
  refine_base, refine_methods = prepare_refinement(t2i, ev, [e for e, _ in prepared], ev.skip_unavailable, notes)
  pairs = parse_comparisons(ev.get('compare', ()))
  heldout = read_split(config, 'test', ev.num_images)
  tools = load_tools(config, ev, heldout, ev.num_images, notes)
  if ev.num_images > len(heldout.captions):
    notes.append(f'{ev.num_images} images for {len(heldout.captions)} test captions: captions repeat (other seeds).')
  workdir.mkdir(parents=True, exist_ok=True)

  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  params = jax.device_put(t2i.params, NamedSharding(mesh, P()))
  digests = {part: params_digest(p) for part, p in t2i.params.items()}
  text_ids = t2i.encode_prompts(heldout.captions)
  per_entry = len(shard_ranges(ev.num_images, ev.shard_size))
  rows, scores = [], {}  # scores: per-image alignment of every generated and refined row, for eval.compare
  with tqdm(total=per_entry * (len(prepared) + len(refine_methods)), desc='eval shards', unit='shard',
            file=sys.stderr, disable=jax.process_index() > 0) as bar:
    for entry, sampler in prepared:
      out = run_entry(t2i, entry, sampler, mesh, params, ev, heldout, text_ids, workdir, digests, bar)
      row = {'name': entry.name, 'kind': 'generated', 'strategy': entry.strategy, 'steps': entry.steps,
             'num_images': ev.num_images, 'alignment': bootstrap_alignment(out['scores'], ev.bootstrap, ev.seed),
             'seconds_per_image': out['seconds_per_image'], 'compile_seconds': out['compile_seconds']}
      row.update(image_metrics(tools, out['images'], out['indices'] % len(heldout.captions)))
      rows.append(row)
      scores[entry.name] = out['scores']
      if entry == refine_base:
        base_out, base_fp = out, fingerprint(sampler, ev.seed, t2i.config.data, digests)
    refined = []
    for mode, chooser in refine_methods:
      out = run_refinement(t2i, base_out, mode, chooser, ev, heldout, workdir, base_fp, digests, bar)
      row = {'name': f'{refine_base.name} + {mode} ({chooser})', 'kind': 'refined', 'strategy': None,
             'steps': None, 'num_images': ev.num_images,
             'alignment': bootstrap_alignment(out['scores'], ev.bootstrap, ev.seed),
             'seconds_per_image': out['seconds_per_image']}
      row.update(image_metrics(tools, out['images'], out['indices'] % len(heldout.captions)))
      refined.append(row)
      scores[row['name']] = out['scores']
  rows += refined
  if ev.reference_rows:
    rows += reference_rows(t2i, ev, heldout, tools, ev.num_images)

  devices = jax.devices()
  results = {'benchmark': f'captioned_shapes/{config.data.config_name}', 'num_images': ev.num_images,
             'seed': ev.seed, 'devices': f'{len(devices)} x {devices[0].device_kind}',
             'weights': str(resolve_path(weights or config.weights)), 'rows': rows,
             'comparisons': comparison_rows(pairs, scores, ev, notes), 'notes': notes,
             'grid': [e.name for e in entries]}
  if jax.process_index() == 0:
    write_text(workdir / 'results.json', json.dumps(results, indent=1))
    write_text(workdir / 'results.md', markdown_table(results))
    tradeoff_plot(results, workdir / 'tradeoff.png')
    _say(f'wrote {workdir / "results.json"}, results.md and tradeoff.png')
  return results


def main(argv):
  del argv
  if flags.FLAGS.workdir is None:
    raise ValueError('--workdir is required')
  results = run_eval(flags.FLAGS.config, flags.FLAGS.workdir, flags.FLAGS.weights)
  if jax.process_index() == 0:
    print(markdown_table(results))


if __name__ == '__main__':
  from tcts_jax.cli import run_main  # pylint: disable=import-outside-toplevel
  config_flags.DEFINE_config_file('config', 'configs/shapes.py:eval', 'Config file with an `eval` section.',
                                  lock_config=True)
  flags.DEFINE_string('workdir', None, 'Output directory (shards, results.json/md, tradeoff.png).')
  flags.DEFINE_string('weights', None, 'Weights directory (default: config.weights, the shipped model).')
  run_main(main)
