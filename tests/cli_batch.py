"""Many command-line runs in one Python: the commands' modules are imported once, then each run is a forked
child that executes the module's `if __name__ == '__main__':` block as `python -m module args...` would (its
own flags, cwd, stdout, stderr and exit status). Importing JAX, TensorFlow and the package is most of a run that
stops at bad input; the module body itself runs once (running it again would register its TFDS builders twice).

  python -m tests.cli_batch RUNS.json RESULTS.json JOBS

RUNS.json: [{"module": ..., "args": [...], "cwd": ..., "chain": optional name}, ...]; RESULTS.json:
[{"returncode", "stdout", "stderr", "seconds"}, ...] in the same order. Runs of one chain run in order, the
rest up to JOBS at a time. The parent never starts JAX's backend (no XLA threads exist when it forks).
"""

import ast
import importlib
import inspect
import json
import os
import pathlib
import sys
import tempfile
import time
import traceback


def main_block(module):
  """The compiled body of the module's `if __name__ == '__main__':` block (its own line numbers)."""
  tree = ast.parse(inspect.getsource(module))
  guard = next(
    node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
  )
  return compile(ast.Module(body=guard.body, type_ignores=[]), module.__file__, 'exec')


def _child(run: dict, main, stdout: str, stderr: str) -> None:
  """Runs in the forked child; never returns."""
  code = 1
  try:
    for fd, path in ((1, stdout), (2, stderr)):
      os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    os.chdir(run['cwd'])
    module = sys.modules[run['module']]
    sys.argv = [module.__file__, *run['args']]
    try:
      exec(main, module.__dict__)  # noqa: S102
      code = 0
    except SystemExit as e:  # what the interpreter does with it
      if e.code is None or isinstance(e.code, int):
        code = e.code or 0
      else:
        print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 (an uncaught error: a traceback and status 1, as python -m gives)
      traceback.print_exc()
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_all(runs: list, jobs: int = 1) -> list:
  """Runs sharing a 'chain' name run in order; other runs (and chains) run up to `jobs` at a time."""
  from jax._src import xla_bridge  # pylint: disable=import-outside-toplevel

  mains = {name: main_block(importlib.import_module(name)) for name in sorted({r['module'] for r in runs})}
  assert not xla_bridge._backends, 'importing the commands started a JAX backend: forking is unsafe'
  chains = {}
  for i, run in enumerate(runs):
    chains.setdefault(run.get('chain', i), []).append(i)
  results, running = [None] * len(runs), {}  # pid -> (chain, run index, start time)
  with tempfile.TemporaryDirectory() as tmp:
    while chains or running:
      busy = {chain for chain, _, _ in running.values()}
      for chain in [c for c in chains if c not in busy][: max(jobs - len(running), 0)]:
        i = chains[chain].pop(0)
        if not chains[chain]:
          del chains[chain]
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
          _child(runs[i], mains[runs[i]['module']], f'{tmp}/{i}.out', f'{tmp}/{i}.err')
        running[pid] = (chain, i, time.perf_counter())
      pid, status = os.wait()
      _, i, start = running.pop(pid)
      results[i] = {
        'returncode': os.waitstatus_to_exitcode(status),
        'stdout': pathlib.Path(f'{tmp}/{i}.out').read_text(errors='replace'),
        'stderr': pathlib.Path(f'{tmp}/{i}.err').read_text(errors='replace'),
        'seconds': time.perf_counter() - start,
      }
  return results


if __name__ == '__main__':
  runs_file, results_file, jobs = sys.argv[1:]
  runs = json.loads(pathlib.Path(runs_file).read_text())
  pathlib.Path(results_file).write_text(json.dumps(run_all(runs, int(jobs))))
