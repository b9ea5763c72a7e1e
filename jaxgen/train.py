"""The one training loop, for every method.

config -> data pipeline -> global sharded batch -> method.train_step (jit, donated state) -> state ->
checkpoints / metrics / sample grids. The loop knows nothing of any family: it only calls the Method
interface (jaxgen/methods/base.py).
"""
import os
import signal
import time
from typing import Any, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils

from jaxgen import checkpoint, config_check, optim, parallel, pretrained, sampling, writers
from jaxgen.methods.base import Method
from jaxgen.state import TrainState, jit_once, step_rng

SAMPLE_SEED = 0x5A3   # folded into the root key for the periodic sample grids: same noise every time


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN/Inf. The last good checkpoint is left intact."""


def root_key(config: ml_collections.ConfigDict) -> jax.Array:
  return jax.random.PRNGKey(config.seed)


def create_state(method: Method, config: ml_collections.ConfigDict, mesh, example_batch: dict,
                 ) -> tuple[Any, Any, Any]:
  """(init_fn, abstract_state, shardings): jitting init_fn(rng, batch) gives the sharded state with
  state.frozen = {}; abstract_state and shardings include the method's frozen parts."""
  def init(rng, batch):
    # Independent keys for the initial params and for the steps' root (never one key for both).
    init_rng, steps_root = jax.random.split(rng)
    return method.init(init_rng, batch).replace(rng=steps_root, frozen={})

  batch_abs = parallel.abstract_batch(example_batch, mesh)
  abstract = jax.eval_shape(init, root_key(config), batch_abs).replace(frozen=method.frozen_parts())
  shardings = parallel.state_sharding(mesh, abstract)
  init_fn = jit_once(init, out_shardings=shardings.replace(frozen={}))
  abstract = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return init_fn, abstract, shardings


def restore_or_init(method: Method, config, mesh, workdir: str, *, step: Optional[int] = None,
                    require_checkpoint: bool = False) -> tuple[TrainState, Any, checkpoint.Checkpointer]:
  """The state of the latest good checkpoint in workdir (or `step`), else a fresh one (initialised
  from config.pretrained's non-frozen parts); with the frozen parts loaded in either case."""
  from jaxgen import data  # pylint: disable=g-import-not-at-top
  example = data.example_batch(config.data, config.train.batch_size)
  init_fn, abstract, shardings = create_state(method, config, mesh, example)
  ckpt = checkpoint.Checkpointer(workdir, keep=config.train.keep_ckpts, config=config)
  state = ckpt.restore(abstract, step)
  if state is None:
    if require_checkpoint:
      raise checkpoint.CheckpointError(
          f"No checkpoint in {ckpt.directory}. Train first (--mode=train) or pass the workdir of a "
          "trained run.")
    if method.init_from_data:   # data-dependent init: the first batch of the run's own order
      rows = next(data.train_iterator(config.data, global_batch_size=config.train.batch_size,
                                      seed=config.seed, start_step=0))
    else:
      rows = parallel.local_rows(example)
    state = init_fn(root_key(config), parallel.global_batch(rows, mesh))
    state = pretrained.init_from_pretrained(state, config, mesh)
  else:
    logging.info("Restored checkpoint at step %d from %s.", int(state.step), ckpt.directory)
  state = state.replace(frozen=pretrained.load_frozen(config, abstract.frozen, mesh))
  return state, shardings, ckpt


def param_overview(state: TrainState) -> str:
  """Parameter counts per top-level network, trained and frozen, for the log."""
  count = lambda t: int(sum(np.prod(x.shape) for x in jax.tree.leaves(t)))  # noqa: E731
  rows = ([(k, count(v)) for k, v in state.params.items()] if isinstance(state.params, dict)
          and all(isinstance(v, dict) for v in state.params.values()) else [("params", count(state.params))])
  rows += [(f"frozen/{k}", count(v)) for k, v in state.frozen.items()]
  return ", ".join(f"{k}: {n:,}" for k, n in rows)


def learning_rates(config: ml_collections.ConfigDict, step: int) -> dict[str, float]:
  """The learning rate of each optimizer config at `step`: "lr" for config.optim, "lr/<net>" for
  per-network optimizers config.optim.<net>."""
  oc = config.get("optim")
  if oc is None:
    return {}
  cfgs = {"lr": oc} if "lr" in oc else {f"lr/{k}": v for k, v in oc.items()
                                         if isinstance(v, ml_collections.ConfigDict) and "lr" in v}
  return {k: float(optim.make_schedule(v, config.train.num_steps)(step)) for k, v in cfgs.items()
          if v.lr is not None}


def make_step_fn(method: Method, config: ml_collections.ConfigDict):
  """state, batch -> (state, metrics): the method's step with the step's key, plus the global
  parameter and update norms (config.train.log_norms).

  The norms are computed only on steps that end a log interval (a multiple of train.log_every,
  or the last step) and are NaN on the others, which the loop's averages leave out: the log shows
  the norms at the logged step. Two passes over every parameter each step cost 2-6% of a
  GAN step on a 2-core CPU (SRGAN: 100-270 ms of 4.2-4.5 s, 25M parameters)."""
  tc = config.train
  log_norms, log_every, num_steps = tc.get("log_norms", True), tc.get("log_every", 0), tc.num_steps

  def norms(new, old):
    return {"param_norm": optax.tree.norm(new).astype(jnp.float32),
            "update_norm": optax.tree.norm(jax.tree.map(jnp.subtract, new, old)).astype(jnp.float32)}

  def step_fn(state, batch):
    new, metrics = method.train_step(state, batch, step_rng(state))
    if log_norms:
      logged = new.step == num_steps
      if log_every:
        logged = logged | (new.step % log_every == 0)
      nan = {k: jnp.full((), jnp.nan, jnp.float32) for k in ("param_norm", "update_norm")}
      metrics = {**metrics, **jax.lax.cond(logged, norms, lambda *_: nan, new.params, state.params)}
    return new, metrics
  return step_fn


def compile_train_step(method: Method, config, mesh, shardings, steps: int = 1):
  """jit(state, batch) -> (state, metrics) over `steps` optimizer steps per call (lax.scan over a
  batch stacked on a leading axis [steps, B, ...]; metrics then have a leading [steps] axis)."""
  step_fn = make_step_fn(method, config)
  if steps == 1:
    return jax.jit(step_fn, in_shardings=(shardings, parallel.batch_sharding(mesh)),
                   out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=(0,))
  return jax.jit(lambda state, batches: jax.lax.scan(step_fn, state, batches),
                 in_shardings=(shardings, parallel.batch_sharding(mesh, stacked=True)),
                 out_shardings=(shardings, parallel.replicated(mesh)), donate_argnums=(0,))


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


def _round_up(n: int, multiple: int) -> int:
  return -(-n // multiple) * multiple


class _Averages:
  """Running sums of step metrics between log lines; NaN entries (metrics a step did not compute)
  are left out of their metric's average."""

  def __init__(self):
    self.sums, self.counts = {}, {}

  def add(self, metrics: dict) -> None:
    for k, v in metrics.items():
      v = float(v)
      if np.isfinite(v):
        self.sums[k] = self.sums.get(k, 0.0) + v
        self.counts[k] = self.counts.get(k, 0) + 1

  def pop(self) -> dict:
    out = {k: self.sums[k] / self.counts[k] for k in self.sums}
    self.sums, self.counts = {}, {}
    return out


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
  k = tc.get("steps_per_dispatch", 1)
  train_steps = {1: compile_train_step(method, config, mesh, shardings)}
  if k > 1:
    train_steps[k] = compile_train_step(method, config, mesh, shardings, steps=k)
  sample_rng = jax.random.fold_in(root_key(config), SAMPLE_SEED)
  sample_batch = _round_up(tc.num_samples, parallel.num_batch_shards(config.mesh))
  batches = data.train_iterator(config.data, global_batch_size=tc.batch_size, seed=config.seed,
                                start_step=start)
  preemption = _Preemption()
  logging.info("Training %s from step %d to %d on %d devices (mesh %s, %d step(s) per dispatch); "
               "params: %s.", config.method, start, tc.num_steps, jax.device_count(),
               dict(mesh.shape), k, param_overview(state))

  averages = _Averages()
  t_last, step_last = time.time(), start
  last_good = ckpt.latest_step()
  pending: Optional[tuple[int, Any]] = None   # (first step, metrics) of the dispatch in flight

  def consume(item) -> None:
    first, metrics = item
    metrics = jax.device_get(metrics)
    losses = np.atleast_1d(metrics["loss"])
    for i, loss in enumerate(losses):
      if not np.isfinite(loss):
        ckpt.wait()
        raise NonFiniteLossError(
            f"Loss is {loss} at step {first + i}. Stopping; the last good checkpoint (step "
            f"{last_good}) in {ckpt.directory} is intact. Lower the learning rate or enable "
            "optim.grad_clip, then rerun to resume from it.")
      averages.add({name: np.atleast_1d(v)[i] for name, v in metrics.items()})

  def due(every: int, step: int, n: int) -> bool:   # a multiple of `every` in (step - n, step]
    return bool(every) and step // every > (step - n) // every

  step = start
  try:
    while step < tc.num_steps:
      if preemption.should_stop(step):
        break
      n = k if step + k <= tc.num_steps else 1
      if n == 1:
        batch = parallel.global_batch(next(batches), mesh)
      else:
        local = [next(batches) for _ in range(n)]
        batch = parallel.global_batch({key: np.stack([b[key] for b in local]) for key in local[0]},
                                      mesh, stacked=True)
      state, metrics = train_steps[n](state, batch)
      step += n
      if pending is not None:
        consume(pending)
      pending = (step - n + 1, metrics)
      if due(tc.log_every, step, n) or step == tc.num_steps:
        consume(pending)
        pending = None
        now = time.time()
        rate = (step - step_last) / max(now - t_last, 1e-9)
        scalars = {**averages.pop(), **learning_rates(config, step)}
        writer.scalars(step, {**scalars, "steps_per_sec": rate})
        eta = (tc.num_steps - step) / max(rate, 1e-9)
        logging.info("step %d/%d  %s  %.2f steps/s  ETA %s", step, tc.num_steps,
                     "  ".join(f"{name}={v:.4g}" for name, v in sorted(scalars.items())), rate,
                     time.strftime("%H:%M:%S", time.gmtime(eta)))
        t_last, step_last = now, step
      if due(tc.ckpt_every, step, n):
        if pending is not None:
          consume(pending)
          pending = None
        ckpt.save(state)
        last_good = step
      if tc.sample_every and due(tc.sample_every, step, n):
        samples, cond = sampling.generate(method, config, state, mesh, tc.num_samples, sample_batch,
                                          sample_rng)
        grid = sampling.save_grid(os.path.join(workdir, "samples", f"step_{step:08d}.png"), samples, cond)
        writer.images(step, {"samples": grid})
      if due(tc.eval_every, step, n):
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
