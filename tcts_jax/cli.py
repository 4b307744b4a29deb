"""Shared command-line plumbing: bad input ends in one clear line and a non-zero exit."""

import sys

from absl import app, flags
from absl import logging as absl_logging

# Errors that mean "the user asked for something wrong", reported without a traceback. Flag parsing
# raises KeyError/AttributeError/TypeError for unknown or mistyped config overrides.
FLAG_ERRORS = (flags.Error, KeyError, AttributeError, TypeError, ValueError)
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def fail(message: str):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _describe(e: Exception) -> str:
  message = str(e.args[0]) if isinstance(e, (KeyError, AttributeError)) and e.args else str(e)
  message = message.strip().strip('"\'') or type(e).__name__
  if isinstance(e, (KeyError, AttributeError)):
    message = f'unknown config key or bad flag: {message}'
  return message.splitlines()[0]


def _parse_flags(argv):
  try:
    return flags.FLAGS(argv)
  except FLAG_ERRORS as e:
    fail(_describe(e))


def run_main(main):
  """`absl.app.run(main)`, turning user errors (flags, config, inputs) into one line and exit status 2."""
  def guarded(argv):
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax and jax log every step at INFO
    try:
      return main(argv)
    except USER_ERRORS as e:
      fail(_describe(e))
  app.run(guarded, flags_parser=_parse_flags)
