"""Shared command-line plumbing: bad input ends in one clear line and a non-zero exit.

Commands define their flags under `if __name__ == '__main__':`, so their modules import cleanly together.
"""

import re
import sys
import warnings

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from tcts_jax.utils.config import config_file

# Errors that mean "the user asked for something wrong", reported without a traceback. Flag parsing
# raises KeyError/AttributeError/TypeError for unknown or mistyped config overrides.
FLAG_ERRORS = (flags.Error, KeyError, AttributeError, TypeError, ValueError, FileNotFoundError)
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)
_CONFIG_FLAGS = []  # names of the config-file flags, whose paths are found from the cwd or the repo root


def fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _describe(e: Exception) -> str:
  message = str(e.args[0]) if isinstance(e, (KeyError, AttributeError)) and e.args else str(e)
  message = message.strip()
  if len(message) > 1 and message[0] == message[-1] and message[0] in '"\'':  # KeyError's str() quotes it
    message = message[1:-1]
  message = message or type(e).__name__
  if isinstance(e, (KeyError, AttributeError)):
    message = f'unknown config key or bad flag: {message}'
  if 'Error whilst parsing config file' in message:  # ml_collections wraps the config's own error in a traceback
    lines = [line for line in message.splitlines() if line.strip()]
    flag = lines[0].split(': Error whilst parsing config file')[0]
    return f'{flag}: {re.sub(r"^[A-Za-z_.]+: ", "", lines[-1])}'
  return message.splitlines()[0]


def _config_spec(spec: str) -> str:
  """'path[:arg]' with the path found from the cwd or, failing that, the repo root."""
  path, sep, arg = spec.partition(':')
  return f'{config_file(path)}{sep}{arg}'


def define_config_flag(name: str, default, help_string: str):
  """An ml_collections config-file flag (`--name=configs/x.py:arg`, `--name.field=value` overrides) whose
  file is found wherever the command runs; a missing file is a one-line error."""
  _CONFIG_FLAGS.append(name)
  return config_flags.DEFINE_config_file(name, default and _config_spec(default), help_string, lock_config=True)


def _resolve_config_args(argv):
  out = list(argv)
  for i, arg in enumerate(out):
    for name in _CONFIG_FLAGS:
      if arg.startswith(f'--{name}='):
        out[i] = f'--{name}=' + _config_spec(arg.split('=', 1)[1])
      elif arg == f'--{name}' and i + 1 < len(out):
        out[i + 1] = _config_spec(out[i + 1])
  return out


def _parse_flags(argv):
  try:
    return flags.FLAGS(_resolve_config_args(argv))
  except FLAG_ERRORS as e:
    fail(_describe(e))


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
  del category, filename, lineno, line
  print(f'warning: {str(message).splitlines()[0]}', file=file or sys.stderr)


def run_main(main):
  """`absl.app.run(main)`, turning user errors (flags, config, inputs) into one line and exit status 2, and
  warnings into one line each."""

  def guarded(argv):
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax and jax log every step at INFO
    warnings.showwarning = _one_line_warning
    try:
      return main(argv)
    except USER_ERRORS as e:
      fail(_describe(e))

  app.run(guarded, flags_parser=_parse_flags)
