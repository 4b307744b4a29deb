"""Things found by name: a short name inside one of our packages, or any importable dotted path.

Datasets (`config.data.name`), evaluators (`config.eval.metrics`) and sampling strategies are chosen by
name, so adding one is adding one module (big_vision's evaluators work the same way).
"""

import importlib


def import_module(name: str, package: str, what: str):
  """`package.name` for a short name (no dot), else the module `name` itself; one-line error if missing."""
  path = name if '.' in name else f'{package}.{name}'
  try:
    return importlib.import_module(path)
  except ModuleNotFoundError as e:
    if e.name and (path == e.name or path.startswith(e.name + '.')):  # the module itself, not one it imports
      raise ValueError(f'unknown {what} {name!r}: no module {path}') from None
    raise


def import_object(path: str, what: str):
  """The object `attribute` of module `a.b.module` for the dotted path 'a.b.module.attribute'."""
  module_name, _, attribute = path.rpartition('.')
  if not module_name:
    raise ValueError(f'unknown {what} {path!r}: expected a dotted path module.attribute')
  try:
    module = importlib.import_module(module_name)
  except ModuleNotFoundError:
    raise ValueError(f'unknown {what} {path!r}: no module {module_name}') from None
  if not hasattr(module, attribute):
    raise ValueError(f'unknown {what} {path!r}: {module_name} has no {attribute!r}')
  return getattr(module, attribute)
