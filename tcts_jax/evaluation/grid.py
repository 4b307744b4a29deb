"""What the eval job runs, parsed from `config.eval` with one-line errors before anything is generated.

A grid entry is 'strategy@steps' or 'strategy@steps[key=value,...]': sampler settings overridden for that row
only, e.g. 'random_revoke@16[visible_tokens=redraw]' or 'tcts_fas@8[top_p=0.86,mask_schedule=linear]'.
Values are read as int, float, bool (True / False) or else str. The row is named by the entry as written,
whitespace removed; that name is what eval.compare pairs and eval.refinement.base refer to.
"""

import dataclasses
import re

REFINE_MODES = ('revision', 'masked')
CHOOSERS = ('selector', 'random')
FORMAT = '"strategy@steps" or "strategy@steps[key=value,...]", e.g. "purity@16" or "tcts_fas@8[top_p=0.9]"'
# Set by the entry itself, not in its brackets.
ENTRY_SETTINGS = ('strategy', 'steps')


def dirname(name: str) -> str:
  """A row name as a file name: schedules like 'uniform:8,random_revoke:8' hold characters paths should not."""
  return re.sub(r'[^A-Za-z0-9_.@-]', '_', name)


def parse_value(text: str):
  """A sampler setting's value as written: int, float, bool (True / False, any case) or else str."""
  if text.lower() in ('true', 'false'):
    return text.lower() == 'true'
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
    return text[1:-1]
  return text


@dataclasses.dataclass(frozen=True)
class Entry:
  strategy: str
  steps: int
  overrides: tuple = ()  # ((sampler setting, value as written), ...), in the written order

  @property
  def settings(self) -> dict:
    """The sampler settings of this row besides strategy and steps: {key: parsed value}."""
    return {k: parse_value(v) for k, v in self.overrides}

  @property
  def name(self) -> str:
    brackets = f'[{",".join(f"{k}={v}" for k, v in self.overrides)}]' if self.overrides else ''
    return f'{self.strategy}@{self.steps}{brackets}'

  @property
  def dirname(self) -> str:
    return dirname(self.name)


def parse_entry(item) -> Entry:
  """One grid entry ('strategy@steps[key=value,...]' or a (strategy, steps) pair); one-line errors."""
  if isinstance(item, (tuple, list)):
    if len(item) != 2 or not str(item[1]).isdigit():
      raise ValueError(f'bad eval.grid entry {item!r}; expected {FORMAT} or (strategy, steps)')
    return Entry(str(item[0]).strip(), int(item[1]))
  text = ''.join(str(item).split())
  head, bracket, rest = text.partition('[')
  strategy, sep, steps = head.rpartition('@')
  if not sep or not strategy or not steps.isdigit() or ']' in head:
    raise ValueError(f'bad eval.grid entry {item!r}; expected {FORMAT}')
  overrides = []
  if bracket:
    if not rest.endswith(']') or '[' in rest or ']' in rest[:-1] or not rest[:-1]:
      raise ValueError(f'bad eval.grid entry {item!r}: sampler settings go in one [key=value,...] at the end')
    for part in rest[:-1].split(','):
      key, eq, value = part.partition('=')
      if not eq or not key.isidentifier() or not value:
        raise ValueError(f'bad sampler setting {part!r} in eval.grid entry {item!r}; expected key=value')
      if key in ENTRY_SETTINGS:
        raise ValueError(f'eval.grid entry {item!r}: {key} is set by "strategy@steps", not in [...]')
      if key in (k for k, _ in overrides):
        raise ValueError(f'eval.grid entry {item!r} sets {key} twice')
      overrides.append((key, value))
  return Entry(strategy, int(steps), tuple(overrides))


def normalise_name(name: str) -> str:
  """A row name as the job spells it: a grid entry without whitespace; any other row name as given."""
  try:
    return parse_entry(name).name
  except ValueError:
    return str(name).strip()


def parse_grid(grid) -> list:
  """eval.grid -> Entries; one-line errors for bad ones and for two entries that run the same sampler (or
  would share a shard directory)."""
  entries = [parse_entry(item) for item in grid]
  if not entries:
    raise ValueError('eval.grid is empty')
  names = [e.name for e in entries]
  if len(set(names)) != len(names):
    raise ValueError(f'duplicate eval.grid entries: {sorted({n for n in names if names.count(n) > 1})}')
  seen, dirs = {}, {}
  for e in entries:
    same = seen.setdefault((e.strategy, e.steps, tuple(sorted(e.settings.items()))), e.name)
    if same != e.name:
      raise ValueError(f'eval.grid entries {same!r} and {e.name!r} run the same sampler')
    other = dirs.setdefault(e.dirname, e.name)
    if other != e.name:
      raise ValueError(f'eval.grid entries {other!r} and {e.name!r} would share the shard directory {e.dirname!r}')
  return entries


def parse_refine_methods(methods) -> list:
  """'<revision|masked>:<selector|random>' strings -> (mode, chooser) pairs; one-line errors for bad ones."""
  out = []
  for method in methods:
    mode, _, chooser = str(method).partition(':')
    if mode not in REFINE_MODES or chooser not in CHOOSERS:
      raise ValueError(
        f'bad eval.refinement method {method!r}; expected "<{"|".join(REFINE_MODES)}>:'
        f'<{"|".join(CHOOSERS)}>", e.g. "revision:selector"'
      )
    out.append((mode, chooser))
  return out


def parse_comparisons(compare) -> list:
  """eval.compare: (A, B) pairs of row names -> [(A, B)] (grid entries spelt as the job names them); a pair
  naming a row this run does not have is skipped with a note later (so a narrowed --config.eval.grid needs
  no matching edit of the pairs)."""
  pairs = []
  for pair in compare:
    if isinstance(pair, str) or len(pair) != 2:
      raise ValueError(
        f"bad eval.compare pair {pair!r}; expected (row name A, row name B), e.g. ('tcts_fas@16', 'random_revoke@16')"
      )
    pairs.append((normalise_name(pair[0]), normalise_name(pair[1])))
  return pairs
