"""Resumable shards: every row's images are saved `shard_size` at a time, whole or not at all.

DIR/shards/<row>/shard_XXXXX.npz holds indices, tokens, uint8 images, a row's other per-image arrays (a
generated row's sampling diagnostics and midpoint tokens), generation seconds and slots (batch places used,
padding included) and the fingerprint of what made them (settings, weights and the shard's own captions). A
rerun reuses every shard whose fingerprint and image indices match, so raising `num_images` keeps the shards
already made, and recomputes missing, unreadable or stale ones, and those lacking an array the row now needs
(with a warning).
"""

import hashlib
import json
import pathlib
import sys

import jax
import numpy as np
from tqdm import tqdm

from tcts_jax.utils.files import atomic_write

ARRAYS = ('indices', 'tokens', 'images')


def say(message: str) -> None:
  """A line on stderr that keeps the progress bar intact (process 0 only)."""
  if jax.process_index() == 0:
    tqdm.write(message, file=sys.stderr)


def shard_ranges(num_images: int, shard_size: int) -> list:
  return [np.arange(s, min(s + shard_size, num_images)) for s in range(0, num_images, shard_size)]


def save_shard(path: pathlib.Path, arrays: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with atomic_write(path) as f:
    np.savez_compressed(f, **arrays)


def load_shard(
  path: pathlib.Path, indices: np.ndarray, fingerprint: str, num_tokens: int, image_size: int, arrays=None
):
  """(shard dict, None) if `path` is a finished shard of these settings, else (None, why not). `arrays`:
  {name: per-image shape} the shard must also hold."""
  if not path.exists():
    return None, None
  try:
    with np.load(path, allow_pickle=False) as f:
      shard = {k: f[k] for k in f.files}
    n = len(indices)
    expected = {
      'indices': (n,),
      'tokens': (n, num_tokens),
      'images': (n, image_size, image_size, 3),
      'seconds': (),
      'slots': (),
      'fingerprint': (),
      **{k: (n, *shape) for k, shape in (arrays or {}).items()},
    }
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


def fingerprint(settings: dict) -> str:
  """A short hash of what makes a shard's content (JSON-serialisable settings)."""
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def params_digest(params) -> str:
  """sha256 of every parameter's name, shape and bytes (a shard records the weights that made it)."""
  h = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
  for path, leaf in sorted(leaves, key=lambda x: str(x[0])):
    leaf = np.asarray(leaf)
    h.update(f'{jax.tree_util.keystr(path)}:{leaf.shape}:{leaf.dtype}'.encode())
    h.update(leaf.tobytes())
  return h.hexdigest()


class ShardStore:
  """The shards of a workdir: `collect` returns a row's images, computing only what is not saved yet."""

  def __init__(self, workdir, num_images: int, shard_size: int, num_tokens: int, image_size: int, bar=None):
    self.root = pathlib.Path(workdir) / 'shards'
    self.ranges = shard_ranges(num_images, shard_size)
    self.num_tokens, self.image_size, self.bar = num_tokens, image_size, bar

  def collect(self, row: str, fp, compute, arrays=None) -> dict:
    """indices, tokens, images, the `arrays` ({name: per-image shape}) of all of the row's images and
    seconds_per_image (generation wall time per batch place). `fp(indices)` is the fingerprint of what makes
    those images; `compute(indices)` -> {'tokens', 'images', 'seconds', 'slots', *arrays} makes a missing
    shard."""
    arrays = arrays or {}
    shards = []
    for s, indices in enumerate(self.ranges):
      path = self.root / row / f'shard_{s:05d}.npz'
      shard_fp = fp(indices)
      shard, why = load_shard(path, indices, shard_fp, self.num_tokens, self.image_size, arrays)
      if shard is None:
        if why:
          say(f'warning: {path} {why}; recomputing it')
        out = compute(indices)
        shard = {
          'indices': indices,
          'tokens': out['tokens'].astype(np.int32),
          'images': out['images'],
          **{k: out[k] for k in arrays},
          'seconds': np.float64(out['seconds']),
          'slots': np.int64(out['slots']),
          'fingerprint': np.array(shard_fp),
        }
        if jax.process_index() == 0:
          save_shard(path, shard)
      shards.append(shard)
      if self.bar is not None:
        self.bar.set_postfix_str(row)
        self.bar.update(1)
    out = {k: np.concatenate([sh[k] for sh in shards]) for k in (*ARRAYS, *arrays)}
    out['seconds_per_image'] = float(sum(sh['seconds'] for sh in shards) / sum(sh['slots'] for sh in shards))
    return out
