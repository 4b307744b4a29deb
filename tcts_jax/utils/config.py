"""Configs and shipped files, found from anywhere: relative paths are tried from the cwd, then the repo root."""

import importlib.util
import pathlib

import ml_collections

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = 'configs/shapes.py:sample'


def resolve_path(path) -> pathlib.Path:
  """A relative path from the cwd if it exists there, else from the repo root (configs, shipped weights)."""
  p = pathlib.Path(path)
  return p if p.is_absolute() or p.exists() else REPO_ROOT / p


def config_file(path: str) -> pathlib.Path:
  """The config file `path` (see `resolve_path`); one-line error when it exists nowhere."""
  file = resolve_path(path)
  if not file.is_file():
    raise FileNotFoundError(f'config file not found: {path} (looked in {pathlib.Path.cwd()} and {REPO_ROOT})')
  return file


def load_config(spec: str = DEFAULT_CONFIG) -> ml_collections.ConfigDict:
  """Load `path/to/config.py[:arg]`: the module's `get_config(arg)` (or `get_config()` without arg)."""
  path, _, arg = spec.partition(':')
  file = config_file(path)
  module_spec = importlib.util.spec_from_file_location(f'_tcts_config_{file.stem}', file)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
