"""What the eval job runs, parsed from `config.eval` with one-line errors before anything is generated."""

import dataclasses
import re

REFINE_MODES = ('revision', 'masked')
CHOOSERS = ('selector', 'random')


def dirname(name: str) -> str:
  """A row name as a file name: schedules like 'uniform:8,random_revoke:8' hold characters paths should not."""
  return re.sub(r'[^A-Za-z0-9_.@-]', '_', name)


@dataclasses.dataclass(frozen=True)
class Entry:
  strategy: str
  steps: int

  @property
  def name(self) -> str:
    return f'{self.strategy}@{self.steps}'

  @property
  def dirname(self) -> str:
    return dirname(self.name)


def parse_grid(grid) -> list:
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
  """eval.compare: (A, B) pairs of row names -> [(A, B)]; a pair naming a row this run does not have is
  skipped with a note later (so a narrowed --config.eval.grid needs no matching edit of the pairs)."""
  pairs = []
  for pair in compare:
    if isinstance(pair, str) or len(pair) != 2:
      raise ValueError(
        f"bad eval.compare pair {pair!r}; expected (row name A, row name B), e.g. ('tcts_fas@16', 'random_revoke@16')"
      )
    pairs.append((str(pair[0]), str(pair[1])))
  return pairs
