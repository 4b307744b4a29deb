"""PyTorch state dicts (read from safetensors, never unpickled) as Flax param trees, key by key.

A Flax module whose submodules carry the PyTorch attribute names gets its params by one rule: the torch
key ``down_block.res_blocks.0.norm.weight`` names the Flax path ``down_block / res_blocks_0 / norm``
(a list index joins the name before it, as linen names list members) and its leaf: ``weight`` is a
``kernel`` (transposed: Linear ``(out, in) -> (in, out)``, Conv ``(out, in, kh, kw) -> (kh, kw, in, out)``),
a norm's ``scale``, an ``embedding``, or a leaf that keeps the name ``weight`` (and the torch layout);
every other leaf (``bias``, ``gamma``, ...) keeps its name. Any torch key without a Flax leaf, Flax leaf
without a torch key, or shape that differs is reported, all of them in one error.
"""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

_INDEX = re.compile(r'^\d+$')


def read_safetensors(directory: str, what: str) -> tuple[dict, dict]:
  """(config.json as a dict, {key: np.ndarray}) of a diffusers / transformers model directory; the
  weights are `*.safetensors` (one file or a sharded index), never a pickle."""
  from safetensors.numpy import load_file

  config_path = os.path.join(directory, 'config.json')
  if not os.path.isfile(config_path):
    raise FileNotFoundError(f'{what}: no config.json in {directory}')
  index = [f for f in sorted(os.listdir(directory)) if f.endswith('.safetensors.index.json')]
  if index:
    with open(os.path.join(directory, index[0])) as f:
      files = sorted(set(json.load(f)['weight_map'].values()))
  else:
    files = [f for f in sorted(os.listdir(directory)) if f.endswith('.safetensors')]
    # Variants (`model.fp16.safetensors`) hold the same weights again: read the plain file when there is one.
    plain = [f for f in files if f.count('.') == 1]
    files = plain or files[:1]
  if not files:
    pickles = [f for f in os.listdir(directory) if f.endswith(('.bin', '.pt', '.pth', '.ckpt'))]
    hint = f' (found {pickles[0]}: pickled weights are never loaded; convert them to safetensors)' if pickles else ''
    raise FileNotFoundError(f'{what}: no *.safetensors weights in {directory}{hint}')
  tensors = {}
  for name in files:
    tensors.update(load_file(os.path.join(directory, name)))
  with open(config_path) as f:
    return json.load(f), tensors


def flax_path(torch_key: str) -> tuple[str, ...]:
  """'a.b.0.c.weight' -> ('a', 'b_0', 'c', 'weight')."""
  out: list[str] = []
  for part in torch_key.split('.'):
    if _INDEX.match(part) and out:
      out[-1] = f'{out[-1]}_{part}'
    else:
      out.append(part)
  return tuple(out)


def _convert_weight(a: np.ndarray, leaf: str) -> np.ndarray:
  if leaf != 'kernel':
    return a
  if a.ndim == 2:
    return a.T
  if a.ndim == 4:
    return a.transpose(2, 3, 1, 0)
  raise ValueError(f'no kernel layout for a {a.ndim}-d weight')


def params_from_torch(tensors: dict, expected, what: str, dtype=jnp.float32, ignore=()):
  """The Flax param tree shaped like `expected` (a tree of arrays or ShapeDtypeStructs, e.g. from
  `jax.eval_shape(module.init, ...)['params']`) filled from the torch `tensors`, cast to `dtype`.
  Keys matching a regex of `ignore` (non-persistent buffers) are skipped."""
  flat = {tuple(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(expected)[0]}
  modules: dict[tuple, set] = {}
  for path in flat:
    modules.setdefault(path[:-1], set()).add(path[-1])
  found, unused, mismatched, seen = {}, [], [], set()
  for key, value in tensors.items():
    if any(re.search(pattern, key) for pattern in ignore):
      continue
    *module, leaf = flax_path(key)
    leaves = modules.get(tuple(module), set())
    if leaf == 'weight' and 'weight' not in leaves:
      leaf = next((n for n in ('kernel', 'scale', 'embedding') if n in leaves), leaf)
    path = (*module, leaf)
    if path not in flat:
      unused.append(key)
      continue
    seen.add(path)
    a = _convert_weight(np.asarray(value, np.float32), leaf)
    want = tuple(flat[path].shape)
    if a.shape != want:
      mismatched.append(f'{key} {tuple(np.shape(value))} -> {"/".join(path)} wants {want}')
      continue
    found[path] = jnp.asarray(a, dtype)
  missing = ['/'.join(p) for p in flat if p not in seen]
  if unused or missing or mismatched:
    parts = [f'{len(missing)} missing: {", ".join(missing)}' if missing else '']
    parts.append(f'{len(unused)} unused: {", ".join(sorted(unused))}' if unused else '')
    parts.append(f'{len(mismatched)} shape mismatches: {"; ".join(mismatched)}' if mismatched else '')
    raise ValueError(f'{what} does not match its config: ' + ' | '.join(p for p in parts if p))
  tree: dict = {}
  for path, value in found.items():
    node = tree
    for k in path[:-1]:
      node = node.setdefault(k, {})
    node[path[-1]] = value
  return tree
