"""The one training loop, for every method.

config -> data pipeline -> global sharded batch -> method.train_step (jit, donated state) -> state ->
checkpoints / metrics / sample grids. The loop knows nothing of any family: it only calls the Method
interface (jaxgen/methods/base.py).
"""
import functools
import os
import signal
import time
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from jaxgen import checkpoint, config_check, images, parallel, writers
from jaxgen.methods.base import Method
from jaxgen.state import TrainState

SAMPLE_SEED = 0x5A3   # folded into the root key for the periodic sample grids: same noise every time


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN/Inf. The last good checkpoint is left intact."""


def root_key(config: ml_collections.ConfigDict) -> jax.Array:
  return jax.random.PRNGKey(config.seed)


def create_state(method: Method, config: ml_collections.ConfigDict, mesh, example_batch: dict,
                 ) -> tuple[Any, Any, Any]:
  """(init_fn, abstract_state, shardings): jitting init_fn(rng, batch) gives the sharded state."""
  def init(rng, batch):
    # Independent keys for the initial params and for the steps' root (never one key for both).
    init_rng, steps_root = jax.random.split(rng)
    return method.init(init_rng, batch).replace(rng=steps_root)

  batch_abs = parallel.abstract_batch(example_batch, mesh)
  abstract = jax.eval_shape(init, root_key(config), batch_abs)
  shardings = parallel.state_sharding(mesh, abstract)
  init_fn = jax.jit(init, out_shardings=shardings)
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return init_fn, abstract, shardings


def restore_or_init(method: Method, config, mesh, workdir: str, *, step: Optional[int] = None,
                    require_checkpoint: bool = False) -> tuple[TrainState, Any, checkpoint.Checkpointer]:
  """The state of the latest good checkpoint in workdir (or `step`), else a fresh one."""
  from jaxgen import data  # pylint: disable=g-import-not-at-top
  example = data.example_batch(config.data, config.train.batch_size)
  init_fn, abstract, shardings = create_state(method, config, mesh, example)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_ckpts)
  state = ckpt.restore(abstract, step)
  if state is None:
    if require_checkpoint:
      raise checkpoint.CheckpointError(
          f"No checkpoint in {ckpt.directory}. Train first (--mode=train) or pass the workdir of a "
          "trained run.")
    state = init_fn(root_key(config), parallel.global_batch(parallel.local_rows(example), mesh))
  else:
    logging.info("Restored checkpoint at step %d from %s.", int(state.step), ckpt.directory)
  return state, shardings, ckpt


@functools.lru_cache(maxsize=None)
def make_sample_fn(method: Method, mesh, num: int):
  """jit(state, rng) -> replicated float32 [num, H, W, C] samples in [-1, 1]. Cached, so periodic
  sampling and evaluation reuse one compiled sampler per (method, mesh, num)."""
  return jax.jit(functools.partial(method.sample, num=num), out_shardings=parallel.replicated(mesh))


class _Preemption:
  """SIGTERM -> checkpoint and stop. Multi-process runs agree on the step via JAX's preemption sync."""

  def __init__(self):
    self.requested = False
    self._multi = jax.process_count() > 1
    if not self._multi:
      self._previous = signal.signal(signal.SIGTERM, self._handler)

  def _handler(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning("SIGTERM received: saving a checkpoint and stopping.")
    self.requested = True

  def should_stop(self, step: int) -> bool:
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.requested

  def restore(self):
    if not self._multi:
      signal.signal(signal.SIGTERM, self._previous)


def _save_samples(workdir: str, writer: writers.Writer, step: int, samples: np.ndarray) -> None:
  if jax.process_index() != 0:
    return
  grid = images.make_grid(samples)
  images.save_png(os.path.join(workdir, "samples", f"step_{step:08d}.png"), grid)
  writer.images(step, {"samples": grid})


def train(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains `config.method` until config.train.num_steps, resuming from workdir's latest checkpoint."""
  from jaxgen import data, evaluate  # pylint: disable=g-import-not-at-top
  method = config_check.validate(config)
  tc = config.train
  mesh = parallel.create_mesh(config.mesh)
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))
  state, shardings, ckpt = restore_or_init(method, config, mesh, workdir)
  start = int(jax.device_get(state.step))
  writer = writers.Writer(workdir)
  batch_sharding = parallel.batch_sharding(mesh)

  def step_fn(state, batch):
    return method.train_step(state, batch, jax.random.fold_in(state.rng, state.step))

  train_step = jax.jit(step_fn, in_shardings=(shardings, batch_sharding),
                       out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=(0,))
  sample_fn = make_sample_fn(method, mesh, tc.num_samples) if tc.sample_every else None
  sample_rng = jax.random.fold_in(root_key(config), SAMPLE_SEED)
  batches = data.train_iterator(config.data, global_batch_size=tc.batch_size, seed=config.seed,
                                start_step=start)
  preemption = _Preemption()
  logging.info("Training %s from step %d to %d on %d devices (mesh %s).", config.method, start,
               tc.num_steps, jax.device_count(), dict(mesh.shape))

  sums: dict[str, float] = {}
  count, t_last, step_last = 0, time.time(), start
  last_good = ckpt.latest_step()
  pending: Optional[tuple[int, Any]] = None   # metrics of the step in flight (read one step late)

  def consume(item) -> None:
    nonlocal count
    s, metrics = item
    metrics = jax.device_get(metrics)
    loss = float(metrics["loss"])
    if not np.isfinite(loss):
      ckpt.wait()
      raise NonFiniteLossError(
          f"Loss is {loss} at step {s}. Stopping; the last good checkpoint (step {last_good}) in "
          f"{ckpt.directory} is intact. Lower the learning rate or enable optim.grad_clip, then "
          "rerun to resume from it.")
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(v)
    count += 1

  step = start
  try:
    while step < tc.num_steps:
      if preemption.should_stop(step):
        break
      batch = parallel.global_batch(next(batches), mesh)
      state, metrics = train_step(state, batch)
      step += 1
      if pending is not None:
        consume(pending)
      pending = (step, metrics)
      if step % tc.log_every == 0 or step == tc.num_steps:
        consume(pending)
        pending = None
        now = time.time()
        rate = (step - step_last) / max(now - t_last, 1e-9)
        scalars = {k: v / count for k, v in sums.items()}
        writer.scalars(step, {**scalars, "steps_per_sec": rate})
        eta = (tc.num_steps - step) / max(rate, 1e-9)
        logging.info("step %d/%d  %s  %.2f steps/s  ETA %s", step, tc.num_steps,
                     "  ".join(f"{k}={v:.4g}" for k, v in sorted(scalars.items())), rate,
                     time.strftime("%H:%M:%S", time.gmtime(eta)))
        sums.clear()
        count, t_last, step_last = 0, now, step
      if tc.ckpt_every and step % tc.ckpt_every == 0:
        if pending is not None:
          consume(pending)
          pending = None
        ckpt.save(state)
        last_good = step
      if sample_fn is not None and step % tc.sample_every == 0:
        _save_samples(workdir, writer, step, np.asarray(jax.device_get(sample_fn(state, sample_rng))))
      if tc.eval_every and step % tc.eval_every == 0:
        writer.scalars(step, evaluate.evaluate(method, config, state, mesh, workdir, write=False))
    if pending is not None:
      consume(pending)
    ckpt.save(state)
  finally:
    preemption.restore()
    ckpt.close()
    writer.close()
  if step < tc.num_steps:
    logging.warning("Stopped at step %d by SIGTERM; checkpoint saved. Rerun the same command to resume.",
                    step)
  return state
