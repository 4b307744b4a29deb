"""Shared fixtures. Compilation dominates small tests, so models and jitted functions are built once, and
the costliest fixtures once per run even when pytest-xdist spreads the files over several workers."""

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import filelock
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]

# One XLA compilation cache for this test run: its processes (xdist workers, every CLI run) compile many of
# the same programs. Set before JAX starts; inherited by every subprocess; removed when the run ends.
if 'TCTS_JAX_TEST_XLA_CACHE' not in os.environ:  # the run's first process; xdist workers inherit it
  os.environ['TCTS_JAX_TEST_XLA_CACHE'] = tempfile.mkdtemp(prefix='tcts_jax_xla_cache_')
os.environ['JAX_COMPILATION_CACHE_DIR'] = os.environ['TCTS_JAX_TEST_XLA_CACHE']
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.2'

# The suite compiles at XLA:CPU's backend optimisation level 0: compilation is most of a small test, and the
# whole suite ran 1804 s -> 1513 s (documented commands 531 s -> 405 s of command time). Values differ from the
# default level's in float rounding only, so the one test that compares bits with a recording made at the
# default level (tests/test_shipped_model.py) remakes them in a process at that level (`DEFAULT_LEVEL_ENV`), as
# users run. Set before JAX starts; inherited by xdist workers and every subprocess (`xla_flags` keeps it).
FAST_COMPILE_FLAG = '--xla_backend_optimization_level=0'
_flags = os.environ.get('XLA_FLAGS', '')
# Not in a process started with DEFAULT_LEVEL_ENV; a subprocess's own flags (a device count) are kept.
if os.environ.get('TCTS_JAX_TEST_XLA_LEVEL') != 'default' and FAST_COMPILE_FLAG not in _flags:
  os.environ['XLA_FLAGS'] = f'{_flags} {FAST_COMPILE_FLAG}'.strip()
DEFAULT_LEVEL_ENV = {
  **os.environ,
  'XLA_FLAGS': os.environ['XLA_FLAGS'].replace(FAST_COMPILE_FLAG, '').strip(),
  'TCTS_JAX_TEST_XLA_LEVEL': 'default',
}


def xla_flags(*flags: str) -> str:
  """The suite's XLA_FLAGS with `flags` added (e.g. a host device count for a subprocess)."""
  return ' '.join([os.environ['XLA_FLAGS'], *flags])


# Files that take minutes, in the order they start (longest first; the rest follow in their usual order), so
# that the two xdist workers finish together instead of one running a long file alone at the end. pyproject's
# --no-loadscope-reorder keeps this order (xdist would otherwise start the files with the most tests first).
LONGEST_FIRST = (
  'test_docs_commands.py',
  'test_notebooks.py',
  'test_sampler.py',
  'test_bad_input.py',
  'test_selector.py',
  'test_amused.py',
  'test_scale.py',
  'test_evaluate.py',
  'test_train.py',
  'test_resume.py',
)


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_sessionfinish(session):
  if not hasattr(session.config, 'workerinput'):  # the main process, after the workers are done
    shutil.rmtree(os.environ['TCTS_JAX_TEST_XLA_CACHE'], ignore_errors=True)


@pytest.fixture(scope='session')
def tiny_config():
  from tcts_jax.utils.config import load_config

  return load_config('configs/shapes.py:sample,tiny')


@pytest.fixture(scope='session')
def tiny_model(tiny_config):
  """(config, models, params): the tiny config with randomly initialised params (no training)."""
  import jax

  from tcts_jax.data import get_dataset
  from tcts_jax.models import build_models, init_params
  from tcts_jax.utils.compilation import jit_one_off

  models = build_models(tiny_config, get_dataset(tiny_config.data).vocabulary())
  params = jit_one_off(lambda rng: init_params(models, tiny_config.data.image_size, rng))(jax.random.key(0))
  return tiny_config, models, params


def dot_generals(jaxpr) -> list:
  """Every dot_general (matmul, einsum) equation in a jaxpr and the jaxprs inside it."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found.append(eqn)
    for param in eqn.params.values():
      for inner in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(inner, 'jaxpr', None)
        if inner is not None:
          found += dot_generals(getattr(inner, 'jaxpr', inner))
  return found


def dot_operand_dtypes(jaxpr) -> set:
  """{(lhs dtype, rhs dtype)} of every dot_general in a jaxpr and the jaxprs inside it."""
  return {tuple(str(v.aval.dtype) for v in eqn.invars) for eqn in dot_generals(jaxpr)}


def make_sampler(models, cfg, **kwargs):
  """The sampler of our `models` (generator and selector handed over as functions)."""
  from tcts_jax.sampling.sampler import Sampler

  return Sampler(models.masked_generator(), cfg, models.token_selector(), **kwargs)


def run_cli(module, *args, timeout=600, env=None, cwd=REPO):
  """Run `python -m module args...` (from the repo root unless `cwd` says otherwise); the CompletedProcess."""
  return subprocess.run(
    [sys.executable, '-m', module, *map(str, args)],
    cwd=cwd,
    capture_output=True,
    text=True,
    timeout=timeout,
    env={**os.environ, **(env or {})},
  )


def run_cli_processes(module, *args, signal_when=None, **kwargs) -> list:
  """`_run_processes`, run again once if gloo could not connect the processes (its TCP connect times out on
  this 2-core machine when the other test worker is busy; nothing has run then, or a rerun resumes)."""
  runs = _run_processes(module, *args, signal_when=signal_when, **kwargs)
  if any(r.returncode and 'Gloo context initialization failed' in r.stderr for r in runs):
    runs = _run_processes(module, *args, signal_when=signal_when, **kwargs)
  return runs


def _run_processes(module, *args, processes=2, devices_per_process=4, timeout=900, signal_when=None) -> list:
  """`python -m module args` as one multi-process JAX run on this machine: `processes` local processes of
  `devices_per_process` host devices each, joined through a coordinator on 127.0.0.1. Their CompletedProcesses
  (stdout and stderr as str), in process order. `signal_when=(text, process, signal)`: send `signal` to that
  process once process 0 has printed a line containing `text`."""
  with socket.socket() as s:  # a free port for the coordinator
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
  env = {
    **os.environ,
    'XLA_FLAGS': xla_flags(f'--xla_force_host_platform_device_count={devices_per_process}'),
    'JAX_PLATFORMS': 'cpu',
    'PYTHONUNBUFFERED': '1',
  }
  flags = [f'--coordinator_address=127.0.0.1:{port}', f'--num_processes={processes}']
  command = [sys.executable, '-m', module, *map(str, args), *flags]
  procs = [
    subprocess.Popen(
      command + [f'--process_id={i}'], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    for i in range(processes)
  ]
  try:
    head = ''
    if signal_when is not None:
      text, target, sig = signal_when
      for line in procs[0].stdout:
        head += line
        if text in line:
          procs[target].send_signal(sig)
          break
    outs = [p.communicate(timeout=timeout) for p in procs]
    outs[0] = (head + outs[0][0], outs[0][1])
  finally:
    for p in procs:
      p.kill()
  return [subprocess.CompletedProcess(command, p.returncode, out, err) for p, (out, err) in zip(procs, outs)]


def run_cli_batch(runs: list, jobs: int = 1, timeout=1800, env=None) -> list:
  """Runs of `python -m module args` given as (module, args, cwd[, chain]), in one process that imports the
  commands once and forks per run (tests/cli_batch.py): runs of one chain in order, the rest up to `jobs` at a
  time; `env` is added to their environment. Their CompletedProcesses, each with the run's `seconds`."""
  with tempfile.TemporaryDirectory() as tmp:
    spec = [
      {'module': m, 'args': [str(a) for a in args], 'cwd': str(cwd), **({'chain': rest[0]} if rest else {})}
      for m, args, cwd, *rest in runs
    ]
    pathlib.Path(tmp, 'runs.json').write_text(json.dumps(spec))
    r = subprocess.run(
      [sys.executable, '-m', 'tests.cli_batch', f'{tmp}/runs.json', f'{tmp}/results.json', str(jobs)],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=timeout,
      env={**os.environ, **(env or {})},
    )
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(pathlib.Path(tmp, 'results.json').read_text())
  done = []
  for (module, args, *_), result in zip(runs, results, strict=True):
    seconds = result.pop('seconds')
    done.append(subprocess.CompletedProcess([module, *args], **result))
    done[-1].seconds = seconds
  return done


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  from tcts_jax.data import shapes_tfds

  data_dir = tmp_path_factory.mktemp('tfds')
  shapes_tfds.build('tiny', data_dir=str(data_dir))
  return data_dir


def built_once(tmp_path_factory, worker_id: str, name: str, build) -> pathlib.Path:
  """`build(path)` once per test run: under pytest-xdist the workers share the directory, and the first to
  take its lock builds it (a file marks it complete) while the others wait for it."""
  base = tmp_path_factory.getbasetemp()
  path = (base.parent if worker_id != 'master' else base) / name
  with filelock.FileLock(f'{path}.lock'):
    if not (path / '.complete').exists():
      build(path)
      (path / '.complete').touch()
  return path


@pytest.fixture(scope='session')
def tiny_features(tmp_path_factory, worker_id, tiny_data_dir):
  """A tiny FID-shapes feature network trained by the real trainer (in-process, 20 steps): its workdir."""

  def build(workdir):
    from tcts_jax.training.trainer import train_and_evaluate
    from tcts_jax.utils.config import load_config

    config = load_config('configs/shapes.py:features,tiny')
    with config.unlocked():
      config.data.data_dir = str(tiny_data_dir)
    _, history = train_and_evaluate(config, workdir)
    assert history[-1][1]['loss'] < history[0][1]['loss']

  return built_once(tmp_path_factory, worker_id, 'tiny_features', build)


@pytest.fixture(scope='session')
def tiny_weights(tmp_path_factory, worker_id):
  """Tiny tokenizer + generator trained for a few steps through the real CLIs, then exported (no image
  summaries: the generator's compiles a whole sampler)."""

  def build(root):
    from tcts_jax.data import shapes_tfds

    shapes_tfds.build('tiny', data_dir=str(root / 'tfds'))
    common = [f'--config.data.data_dir={root / "tfds"}', '--config.train.image_every=0']
    for stage, extra in [('tokenizer', []), ('generator', [f'--config.tokenizer_checkpoint={root / "tokenizer"}'])]:
      r = run_cli(
        'tcts_jax.train', f'--config=configs/shapes.py:{stage},tiny', f'--workdir={root / stage}', *common, *extra
      )
      assert r.returncode == 0, r.stderr[-3000:]
    r = run_cli(
      'tcts_jax.export',
      '--config=configs/shapes.py:sample,tiny',
      f'--tokenizer={root / "tokenizer"}',
      f'--generator={root / "generator"}',
      f'--out={root / "weights"}',
    )
    assert r.returncode == 0, r.stderr[-3000:]

  return built_once(tmp_path_factory, worker_id, 'tiny_run', build) / 'weights'
