"""The trainer: one stage (tokenizer, generator, selector, features) of a text-to-image MGM.

The train step is jitted over a `jax.sharding.Mesh` with a 'data' axis (params replicated, batch split
across all devices of all processes). Checkpoints are written periodically with orbax and training
resumes from the latest one in `workdir` automatically.
"""

import functools
import pathlib
import sys
import time

import jax
import ml_collections
import numpy as np
import optax
from clu import metric_writers, periodic_actions
from flax.training import train_state
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm import tqdm

from tcts_jax.data import Dataset, get_dataset, pipeline, require_fields
from tcts_jax.training.stages import stage_for
from tcts_jax.utils import checkpoint


def make_optimizer(cfg) -> optax.GradientTransformation:
  schedule = optax.warmup_cosine_decay_schedule(
    0.0, cfg.learning_rate, cfg.warmup_steps, max(cfg.num_steps, cfg.warmup_steps + 1), cfg.learning_rate * 0.05
  )
  return optax.chain(optax.clip_by_global_norm(cfg.grad_clip), optax.adamw(schedule, weight_decay=cfg.weight_decay))


def train_step(stage, state, frozen, batch, rng):
  rng = jax.random.fold_in(rng, state.step)
  (loss, metrics), grads = jax.value_and_grad(stage.loss, has_aux=True)(state.params, frozen, batch, rng)
  metrics = {'loss': loss, 'grad_norm': optax.tree.norm(grads), **metrics}
  return state.apply_gradients(grads=grads), metrics


def encode_training_set(dataset: Dataset, encode, num_tokens: int, batch_size: int = 256) -> np.ndarray:
  """(records, N) int32 codes of this process's training records; `encode(images uint8) -> (B, N)` is the
  frozen VQ of the stage (jitted here).

  The generator and selector stages see each image several times (the generator ~5 epochs); encoding it
  once here instead of in every step takes ~7% off their steps. Other processes' rows stay 0.
  """
  loader = pipeline.make_loader(dataset, 'train', batch_size, shuffle=False, num_epochs=1, drop_remainder=False)
  encode = jax.jit(encode)
  codes = np.zeros((dataset.num_records('train'), num_tokens), np.int32)
  for batch in loader:
    codes[batch['index']] = np.asarray(encode(batch['image']))
  return codes


def _check_workdir(workdir) -> pathlib.Path:
  path = pathlib.Path(workdir)
  if path.exists() and not path.is_dir():
    raise ValueError(f'workdir {workdir} exists and is not a directory')
  path.mkdir(parents=True, exist_ok=True)
  return path


def train_and_evaluate(config: ml_collections.ConfigDict, workdir):
  """Trains `config.stage` in `workdir`; returns the final state and the logged [(step, metric means)]."""
  workdir = _check_workdir(workdir)
  dataset = get_dataset(config.data)
  stage = stage_for(config, dataset)
  require_fields(dataset, stage.needs_fields, f'the {config.stage} stage')
  frozen = stage.frozen()

  mesh = Mesh(np.asarray(jax.devices()), ('data',))
  replicated, batch_sharding = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  cfg = config.train
  if cfg.batch_size % jax.device_count():
    raise ValueError(f'train.batch_size {cfg.batch_size} is not divisible by the {jax.device_count()} devices')
  loader = pipeline.make_loader(
    dataset,
    'train',
    cfg.batch_size // jax.process_count(),
    seed=config.seed,
    tokenize=stage.tokenize if stage.needs_text else None,
  )

  mngr = checkpoint.checkpoint_manager(workdir, cfg.keep_checkpoints, cfg.checkpoint_every)
  codes = None
  if stage.needs_codes and (mngr.latest_step() or 0) >= cfg.num_steps:
    # A finished stage only restores: the codes shape its first batch and are never trained on.
    codes = np.zeros((dataset.num_records('train'), stage.num_tokens), np.int32)
  elif stage.needs_codes:
    start_time = time.perf_counter()
    codes = encode_training_set(dataset, functools.partial(stage.encode_images, frozen), stage.num_tokens)
    print(f'encoded {len(codes)} training images in {time.perf_counter() - start_time:.0f} s', flush=True)

  def next_batch():
    batch = next(loader)
    if codes is not None:
      batch['codes'] = codes[batch['index']]
    arrays = {k: v for k, v in batch.items() if isinstance(v, np.ndarray) and v.dtype != object}
    return jax.tree.map(lambda a: jax.make_array_from_process_local_data(batch_sharding, a), arrays)

  batch = next_batch()
  rng = jax.random.key(config.seed)
  tx = make_optimizer(cfg)
  # Made by one jitted function, so the state has the types and placement of what train_step returns and
  # the step compiles once (a state built eagerly differs from the step's output and compiled it twice).
  state = jax.jit(
    lambda rng, batch: train_state.TrainState.create(apply_fn=None, params=stage.init(rng, batch), tx=tx),
    out_shardings=replicated,
  )(rng, batch)
  frozen = jax.device_put(frozen, replicated)

  if mngr.latest_step() is not None:
    state = mngr.restore(mngr.latest_step(), args=checkpoint.ocp.args.StandardRestore(state))
    print(f'resumed from step {int(state.step)}', flush=True)
  start = int(state.step)

  step_fn = jax.jit(
    functools.partial(train_step, stage),
    donate_argnums=0,
    in_shardings=(replicated, replicated, batch_sharding, replicated),
    out_shardings=(replicated, replicated),
  )
  images_fn = jax.jit(stage.images)

  writer = metric_writers.create_default_writer(str(workdir), just_logging=jax.process_index() > 0)
  writer.write_hparams({k: str(v) for k, v in config.items()})
  hooks = [periodic_actions.ReportProgress(num_train_steps=cfg.num_steps, writer=writer, every_steps=cfg.log_every)]
  totals, count, history = None, 0, []
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
    for step in range(start + 1, cfg.num_steps + 1):
      state, metrics = step_fn(state, frozen, batch, rng)
      totals = metrics if totals is None else jax.tree.map(lambda a, b: a + b, totals, metrics)
      count += 1
      for hook in hooks:
        hook(step)
      if step % cfg.log_every == 0 or step == cfg.num_steps:
        means = {k: float(v) / count for k, v in jax.device_get(totals).items()}
        writer.write_scalars(step, means)
        history.append((step, means))
        bar.write(
          f'[{config.stage}] step {step}/{cfg.num_steps} ' + ' '.join(f'{k}={v:.4f}' for k, v in means.items()),
          file=sys.stdout,
        )
        bar.set_postfix(loss=f'{means["loss"]:.4f}', refresh=False)
        totals, count = None, 0
      if cfg.image_every and (step % cfg.image_every == 0 or step == cfg.num_steps):
        writer.write_images(step, {'samples': np.asarray(images_fn(state.params, frozen, batch))[None]})
      mngr.save(step, args=checkpoint.ocp.args.StandardSave(state), force=step == cfg.num_steps)
      bar.update(1)
      if step < cfg.num_steps:
        batch = next_batch()
  finally:
    bar.close()
    # Let a pending async save finish first, so a crash ends with its own error, not orbax's.
    mngr.wait_until_finished()
    mngr.close()
  writer.flush()
  return state, history
