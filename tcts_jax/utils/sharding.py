"""Device mesh and parameter partitioning from a config (docs/design.md §13).

The mesh has named axes, e.g. {'data': -1, 'fsdp': 1} (-1: every device the other axes leave). The batch is
split over every axis but 'model'; parameters and optimizer state are placed by partition rules, the
big_vision / t5x way: (regex, spec) pairs matched with `re.search` against each leaf's '/'-joined path
(`params/generator/block_0/mlp/Dense_0/kernel`, and the same name under `opt_state/...` for its Adam
moments, so one rule places a parameter and its optimizer state alike). The first matching rule wins;
a leaf no rule matches is replicated. A spec is either

- a tuple with one entry per dimension: None (not split), a mesh axis name, or a tuple of axis names; or
- 'fsdp': split the largest dimension divisible by the fsdp axis size over that axis (ZeRO-3 style), or
  replicate the leaf if none is (small biases, scalars); or 'replicate'.

Everything here is pure except `make_mesh` (which reads the devices).
"""

from __future__ import annotations

import math
import re
from typing import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

# The axis that splits parameters within a layer (tensor parallelism): the batch is not split over it.
MODEL_AXIS = 'model'


def make_mesh(axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh over `devices` (default: all of every process) with `axes` {name: size}; one size may be -1."""
  devices = list(jax.devices() if devices is None else devices)
  names, sizes = list(axes), [int(s) for s in axes.values()]
  if not names:
    raise ValueError('the mesh needs at least one axis, e.g. {data: -1}')
  if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
    raise ValueError(f'mesh axis sizes must be positive, with at most one -1, got {dict(axes)}')
  known = math.prod(s for s in sizes if s != -1)
  if -1 in sizes:
    if len(devices) % known:
      raise ValueError(f'mesh {dict(axes)}: {len(devices)} devices are not divisible by {known}')
    sizes[sizes.index(-1)] = len(devices) // known
  if math.prod(sizes) != len(devices):
    raise ValueError(f'mesh {dict(axes)} needs {math.prod(sizes)} devices, there are {len(devices)}')
  # Auto axes: jit places intermediates itself (jax.make_mesh defaults to explicit sharding types).
  return jax.make_mesh(sizes, names, axis_types=(jax.sharding.AxisType.Auto,) * len(names), devices=devices)


def batch_axes(mesh: Mesh) -> tuple:
  return tuple(a for a in mesh.axis_names if a != MODEL_AXIS)


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension split over every axis but 'model'."""
  return NamedSharding(mesh, P(batch_axes(mesh)))


def leaf_name(path) -> str:
  return jax.tree_util.keystr(path, simple=True, separator='/')


def leaf_spec(name: str, shape: Sequence[int], rules, axis_sizes: Mapping[str, int]) -> P:
  """The PartitionSpec of one leaf by the first rule whose regex matches `name` (replicated if none)."""
  for pattern, spec in rules:
    if re.search(pattern, name):
      break
  else:
    return P()
  if spec == 'replicate' or not shape:
    return P()
  if spec == 'fsdp':
    size = axis_sizes.get('fsdp', 1)
    dims = [d for d in np.argsort(shape, kind='stable')[::-1] if shape[d] % size == 0]
    if size == 1 or not dims:
      return P()
    return P(*('fsdp' if d == dims[0] else None for d in range(len(shape))))
  if isinstance(spec, str) or len(spec) != len(shape):
    raise ValueError(
      f'partition rule {pattern!r}: spec {spec!r} is not "fsdp", "replicate" or one entry per dimension '
      f'of {name} {tuple(shape)}'
    )
  for dim, axes in enumerate(spec):
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    unknown = [a for a in axes if a not in axis_sizes]
    if unknown:
      raise ValueError(f'partition rule {pattern!r} names mesh axis {unknown[0]!r}; the mesh has {list(axis_sizes)}')
    devices = math.prod(axis_sizes[a] for a in axes)
    if shape[dim] % devices:
      raise ValueError(
        f'partition rule {pattern!r} splits dimension {dim} of {name} {tuple(shape)} over {devices} devices: '
        'not divisible'
      )
  return P(*(tuple(a) if isinstance(a, (list, tuple)) else a for a in spec))


def check_rules(rules, mesh: Mesh) -> None:
  """One-line errors for rules that no tree could satisfy (bad regex, spec or axis name); shapes are checked
  when the rules are applied."""
  for rule in rules:
    if len(rule) != 2:
      raise ValueError(f'a partition rule is (regex, spec), got {rule!r}')
    pattern, spec = rule
    try:
      re.compile(pattern)
    except (re.error, TypeError) as e:
      raise ValueError(f'partition rule {pattern!r}: not a regular expression ({e})') from None
    if spec in ('fsdp', 'replicate'):
      continue
    if isinstance(spec, str) or not isinstance(spec, (tuple, list)):
      raise ValueError(f'partition rule {pattern!r}: spec {spec!r} is not "fsdp", "replicate" or a tuple of axes')
    for axes in spec:
      for axis in () if axes is None else (axes,) if isinstance(axes, str) else axes:
        if axis not in mesh.axis_names:
          raise ValueError(f'partition rule {pattern!r} names mesh axis {axis!r}; the mesh has {list(mesh.axis_names)}')


def partition_specs(tree, rules, axis_sizes: Mapping[str, int]):
  """A PartitionSpec per leaf of `tree` (arrays or ShapeDtypeStructs)."""
  rules = [(str(pattern), spec) for pattern, spec in rules]
  return jax.tree_util.tree_map_with_path(
    lambda path, leaf: leaf_spec(leaf_name(path), np.shape(leaf), rules, axis_sizes), tree
  )


def without_axis(sharding: NamedSharding, axis: str) -> NamedSharding:
  """`sharding` with `axis` dropped from its spec: what an all-gather over that axis leaves."""

  def drop(entry):
    entries = () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)
    kept = tuple(a for a in entries if a != axis)
    return None if not kept else kept[0] if len(kept) == 1 else kept

  return NamedSharding(sharding.mesh, P(*(drop(e) for e in sharding.spec)))


def sum_over_processes(x: np.ndarray) -> np.ndarray:
  """The elementwise sum of `x` (the same shape on every process) over all processes: one all-reduce over a
  mesh of one device per process, so no host ever holds every process's copy."""
  if jax.process_count() == 1:
    return x
  mesh = Mesh(np.array([jax.local_devices(process_index=p)[0] for p in range(jax.process_count())]), ('process',))
  stacked = jax.make_array_from_process_local_data(NamedSharding(mesh, P('process')), x[None])
  total = jax.jit(lambda a: a.sum(0, dtype=a.dtype), out_shardings=NamedSharding(mesh, P()))(stacked)
  return np.asarray(total.addressable_data(0))


def tree_shardings(tree, rules, mesh: Mesh):
  """A NamedSharding per leaf of `tree` on `mesh` by `rules`."""
  specs = partition_specs(tree, rules, dict(mesh.shape))
  return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P))
