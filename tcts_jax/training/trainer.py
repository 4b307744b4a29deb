"""The trainer: one stage (tokenizer, generator, selector, features) of a text-to-image MGM.

The train step is jitted over a `jax.sharding.Mesh` of all devices of all processes, shaped by
`config.train.mesh` (e.g. {'data': -1, 'fsdp': 1}): the batch is split over its axes, params and optimizer
state are placed by `config.train.partition_rules` (tcts_jax/utils/sharding.py; replicated by default, ZeRO-3
style with an 'fsdp' axis), and `config.train.compute_dtype` may run the forward and backward passes in
bfloat16 on float32 master weights. Checkpoints (train state + the data iterator's position) are written
periodically with orbax, and a rerun resumes exactly where the latest readable one left off: its parameters
are bitwise those of an uninterrupted run. SIGTERM (a preemption notice) checkpoints the current step and
stops; a non-finite metric stops training before any checkpoint of that step is written (docs/design.md §12).
"""

import contextlib
import functools
import pathlib
import signal
import sys
import threading
import time

import jax
import ml_collections
import numpy as np
import optax
from clu import metric_writers, periodic_actions
from flax.training import train_state
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

from tcts_jax.data import Dataset, get_dataset, pipeline, require_fields
from tcts_jax.training.stages import stage_for
from tcts_jax.utils import checkpoint, compilation, sharding
from tcts_jax.utils.precision import COMPUTE_DTYPES, cast_floating


class TrainingDiverged(RuntimeError):
  """A training metric became NaN or infinite; the latest checkpoint is the last good step."""


def say(message: str) -> None:
  """One line on stdout, from process 0 only, above the progress bar."""
  if jax.process_index() == 0:
    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def check_finite(step: int, metrics: dict) -> None:
  """Raise TrainingDiverged naming `step` and its non-finite metrics (host values or device arrays)."""
  bad = sorted(k for k, v in jax.device_get(metrics).items() if not np.all(np.isfinite(v)))
  if bad:
    raise TrainingDiverged(f'training diverged: {", ".join(bad)} not finite at step {step}')


@contextlib.contextmanager
def sigterm_requests_stop():
  """A flag that SIGTERM sets (yielded as a threading.Event) while the block runs, instead of killing the
  process. Single-process only: on several hosts JAX's preemption service handles the signal and orbax's
  `reached_preemption` tells every host the same step."""
  requested = threading.Event()
  if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
    yield requested
    return
  previous = signal.signal(signal.SIGTERM, lambda *_: requested.set())
  try:
    yield requested
  finally:
    signal.signal(signal.SIGTERM, previous)


def make_optimizer(cfg) -> optax.GradientTransformation:
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.num_steps, cfg.warmup_steps + 1), cfg.learning_rate * 0.05
  )
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adamw(schedule, weight_decay=cfg.weight_decay))


def train_step(stage, state, frozen, batch, rng, *, compute_dtype='float32', gathered=None):
  """One optimizer step. `gathered`: the params' shardings without the 'fsdp' axis (None: unconstrained);
  the forward pass all-gathers them to it and runs data-parallel, so the gradients leave it reduce-scattered back to the
  sharded state (ZeRO-3), instead of XLA splitting activations to follow the params' feature dimensions.
  With a compute_dtype other than float32 the loss runs on the trained params cast to it (frozen parts stay
  as loaded: the VQ's nearest-code search is not to be rounded); the cast is inside the differentiated
  function, so gradients and the update stay float32, and the stages compute their softmax and losses in
  float32 whatever the logits' dtype."""
  rng = jax.random.fold_in(rng, state.step)

  def loss(params):
    if gathered is not None:
      params = jax.lax.with_sharding_constraint(params, gathered)
    if compute_dtype != 'float32':
      params = cast_floating(params, COMPUTE_DTYPES[compute_dtype])
    return stage.loss(params, frozen, batch, rng)

  (loss, metrics), grads = jax.value_and_grad(loss, has_aux=True)(state.params)
  metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads), **metrics}
  return state.apply_gradients(grads=grads), metrics


def encode_training_set(dataset: Dataset, encode, num_tokens: int, batch_size: int = 256) -> np.ndarray:
  """(records, N) int32 codes of every training record; `encode(images uint8) -> (B, N)` is the frozen VQ of
  the stage (jitted here, on this process's first device).

  The generator and selector stages see each image several times (the generator ~5 epochs); encoding it
  once here instead of in every step takes ~7% off their steps. Each process encodes its share of the
  records, and all of them then hold every code (a process's batches may hold any record).
  """
  loader = pipeline.make_loader(dataset, 'train', batch_size, shuffle=False, num_epochs=1, drop_remainder=False)
  encode = jax.jit(encode)
  codes = np.zeros((dataset.num_records('train'), num_tokens), np.int32)
  mine = np.zeros(len(codes), bool)
  for batch in loader:
    codes[batch['index']] = np.asarray(encode(batch['image']))
    mine[batch['index']] = True
  if jax.process_count() > 1:  # each record was encoded by exactly one process, the others left zeros
    if not np.all(sharding.sum_over_processes(mine.astype(np.int32)) == 1):
      raise RuntimeError('the processes did not encode every training record exactly once')
    codes = sharding.sum_over_processes(codes)
  return codes


# config.train fields: (the smallest allowed value, whether it may equal it). Every number must be finite.
TRAIN_LIMITS = {
  'batch_size': (1, True),
  'num_steps': (1, True),
  'learning_rate': (0, False),
  'warmup_steps': (0, True),
  'weight_decay': (0, True),
  'grad_clip': (0, False),
  'log_every': (1, True),
  'image_every': (0, True),
  'checkpoint_every': (1, True),
  'keep_checkpoints': (1, True),
}


def check_train_config(cfg) -> None:
  """One-line errors for out-of-range or non-finite `config.train` values, before anything is built."""
  for key, (low, inclusive) in TRAIN_LIMITS.items():
    value = cfg[key]
    if not np.isfinite(value) or value < low or (value == low and not inclusive):
      raise ValueError(f'train.{key} must be {">=" if inclusive else ">"} {low} and finite, got {value}')
  if cfg.batch_size % jax.device_count():
    raise ValueError(f'train.batch_size {cfg.batch_size} is not divisible by the {jax.device_count()} devices')
  if cfg.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(f'train.compute_dtype must be one of {sorted(COMPUTE_DTYPES)}, got {cfg.compute_dtype!r}')


def _check_workdir(workdir) -> pathlib.Path:
  path = pathlib.Path(workdir)
  if path.exists() and not path.is_dir():
    raise ValueError(f'workdir {workdir} exists and is not a directory')
  return path


def train_and_evaluate(config: ml_collections.ConfigDict, workdir):
  """Trains `config.stage` in `workdir`; returns the final state and the logged [(step, metric means)].
  Nothing is written to `workdir` (nor is it created) until the config, data and frozen parts have loaded."""
  check_train_config(config.train)
  mesh = sharding.make_mesh(config.train.mesh)
  sharding.check_rules(config.train.partition_rules, mesh)
  workdir = _check_workdir(workdir)
  dataset = get_dataset(config.data)
  stage = stage_for(config, dataset)
  require_fields(dataset, stage.needs_fields, f'the {config.stage} stage')
  frozen = stage.frozen()

  cfg = config.train
  replicated, batch_sharding = NamedSharding(mesh, P()), sharding.batch_sharding(mesh)
  loader = pipeline.make_loader(
    dataset,
    'train',
    cfg.batch_size // jax.process_count(),
    seed=config.seed,
    tokenize=stage.tokenize if stage.needs_text else None,
  )

  workdir.mkdir(parents=True, exist_ok=True)
  mngr = checkpoint.checkpoint_manager(workdir, cfg.keep_checkpoints, cfg.checkpoint_every)
  codes = None
  if stage.needs_codes and (mngr.latest_step() or 0) >= cfg.num_steps:
    # A finished stage only restores: the codes shape its first batch and are never trained on.
    codes = np.zeros((dataset.num_records('train'), stage.num_tokens), np.int32)
  elif stage.needs_codes:
    start_time = time.perf_counter()
    codes = encode_training_set(dataset, functools.partial(stage.encode_images, frozen), stage.num_tokens)
    say(f'encoded {len(codes)} training images in {time.perf_counter() - start_time:.0f} s')

  def next_batch():
    batch = next(loader)
    if codes is not None:
      batch['codes'] = codes[batch['index']]
    arrays = {k: v for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype != object}
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(batch_sharding, a), arrays)

  batch = next_batch()
  rng = jax.random.key(config.seed)
  tx = make_optimizer(cfg)

  def create_state(rng, batch):
    return train_state.TrainState.create(apply_fn=None, params=stage.init(rng, batch), tx=tx)

  # Made by one jitted function, so the state has the types and placement of what train_step returns and
  # the step compiles once (a state built eagerly differs from the step's output and compiled it twice).
  state_sharding = sharding.tree_shardings(jax.eval_shape(create_state, rng, batch), cfg.partition_rules, mesh)
  state = compilation.jit_one_off(create_state, out_shardings=state_sharding)(rng, batch)
  frozen_sharding = sharding.tree_shardings(frozen, cfg.partition_rules, mesh)
  frozen = jax.device_put(frozen, frozen_sharding)
  gathered = jax.tree.map(lambda s: sharding.without_axis(s, 'fsdp'), state_sharding.params)

  restored = checkpoint.restore_train_state(mngr, state, loader)
  if restored is not None:  # the loader now stands where it stood at that step
    state, batch = restored, next_batch()
    say(f'resumed from step {int(state.step)}')
  start = int(state.step)

  step_fn = jax.jit(
    functools.partial(train_step, stage, compute_dtype=cfg.compute_dtype, gathered=gathered),
    donate_argnums=0,
    in_shardings=(state_sharding, frozen_sharding, batch_sharding, replicated),
    out_shardings=(state_sharding, replicated),
  )
  images_fn = jax.jit(stage.images, out_shardings=replicated)  # every process holds the picture

  writer = metric_writers.create_default_writer(str(workdir), just_logging=jax.process_index() > 0)
  writer.write_hparams({k: str(v) for k, v in config.items()})
  hooks = [periodic_actions.ReportProgress(num_train_steps=cfg.num_steps, writer=writer, every_steps=cfg.log_every)]
  totals, count, history = None, 0, []
  # The (step, metrics) not yet checked for NaN/inf. Checked one step late (the host never waits for the step
  # it has just dispatched), and at once before a log line or a save.
  unchecked = None

  def check_unchecked():
    nonlocal unchecked
    if unchecked:
      check_finite(*unchecked)
      unchecked = None

  # Progress with rate and ETA on stderr (process 0); the log lines below go to stdout above it.
  bar = tqdm(
    total=cfg.num_steps,
    initial=start,
    desc=f'[{config.stage}]',
    unit='step',
    file=sys.stderr,
    disable=jax.process_index() > 0,
    dynamic_ncols=True,
  )
  try:
    with sigterm_requests_stop() as stop_requested:
      for step in range(start + 1, cfg.num_steps + 1):
        state, metrics = step_fn(state, frozen, batch, rng)
        check_unchecked()
        unchecked = (step, metrics)
        totals = metrics if totals is None else jax.tree.map(lambda a, b: a + b, totals, metrics)
        count += 1
        for hook in hooks:
          hook(step)
        if step % cfg.log_every == 0 or step == cfg.num_steps:
          check_unchecked()
          means = {k: float(v) / count for k, v in jax.device_get(totals).items()}
          writer.write_scalars(step, means)
          history.append((step, means))
          say(f'[{config.stage}] step {step}/{cfg.num_steps} ' + ' '.join(f'{k}={v:.4f}' for k, v in means.items()))
          bar.set_postfix(loss=f'{means["loss"]:.4f}', refresh=False)
          totals, count = None, 0
        if cfg.image_every and (step % cfg.image_every == 0 or step == cfg.num_steps):
          writer.write_images(step, {'samples': np.asarray(images_fn(state.params, frozen, batch))[None]})
        preempted = stop_requested.is_set() or mngr.reached_preemption(step)
        if preempted or step == cfg.num_steps or mngr.should_save(step):
          check_unchecked()  # never checkpoint a diverged state
          checkpoint.save_train_state(mngr, step, state, loader, force=preempted or step == cfg.num_steps)
        bar.update(1)
        if preempted:
          say(
            f'[{config.stage}] stopped by {"SIGTERM" if stop_requested.is_set() else "a preemption notice"}: '
            f'checkpoint of step {step} saved in {workdir}; '
            'rerun the same command to resume'
          )
          break
        if step < cfg.num_steps:
          batch = next_batch()
  finally:
    bar.close()
    # Let a pending async save finish first, so a crash ends with its own error, not orbax's.
    mngr.wait_until_finished()
    mngr.close()
  writer.flush()
  return state, history
