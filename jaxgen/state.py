"""TrainState: everything a run needs to continue, as one pytree of arrays; and the one EMA home."""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxgen.errors import ConfigError

PyTree = Any

EMA_SCHEDULES = ("constant", "warmup", "stylegan")


@flax.struct.dataclass
class TrainState:
  """State of any method. All leaves are arrays, so orbax saves and restores it onto any mesh.

  Attributes:
    step: int32 scalar, number of optimizer steps taken.
    params: trainable parameters. Multi-network methods use a dict of named networks,
      e.g. {"generator": ..., "discriminator": ...}.
    opt_state: optax state(s), same top-level structure as `params` for multi-network methods.
    ema_params: exponential moving average of `params` (or of the part that is sampled from), or None.
    model_state: non-trainable Flax collections (e.g. {"batch_stats": ...}); {} if none.
    rng: the run's root PRNG key (raw uint32 key data). Never consumed directly: the trainer passes
      `jax.random.fold_in(rng, step)` to each step, so a resumed run draws the same numbers.
    frozen: pretrained networks that are not trained here, name -> params (see jaxgen.pretrained):
      filled by the loop from config.pretrained, sharded like params, passed to every compiled
      function as part of the state (never compiled in as constants), and never written into this
      run's checkpoints. {} in `Method.init`.
  """
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  ema_params: PyTree
  model_state: PyTree
  rng: jax.Array
  frozen: PyTree = flax.struct.field(default_factory=dict)

  def apply_gradients(self, tx: optax.GradientTransformation, grads: PyTree,
                      ema_decay: float | jax.Array = 0.0) -> "TrainState":
    """One optimizer step of the single-network case: params and opt_state updated by `tx`, the EMA
    (if kept) moved toward the new params with `ema_decay` (a float or a traced value, see
    `ema_decay`), step + 1."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema = self.ema_params
    if ema is not None:
      ema = ema_update(ema, params, ema_decay)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema)

  @classmethod
  def create(cls, *, params, opt_state, rng, ema_params=None, model_state=None) -> "TrainState":
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
      rng = jax.random.key_data(rng)   # the state keeps raw key data (orbax saves plain arrays)
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
               ema_params=ema_params, model_state={} if model_state is None else model_state,
               rng=rng, frozen={})


def ema_init(params: PyTree, train_cfg: ml_collections.ConfigDict) -> PyTree:
  """The initial EMA (a copy of `params`) when train_cfg.ema_decay > 0, else None."""
  return jax.tree.map(jnp.copy, params) if train_cfg.ema_decay > 0 else None


def ema_update(ema: PyTree, new: PyTree, decay: float | jax.Array) -> PyTree:
  """ema <- decay * ema + (1 - decay) * new, leaf-wise (float32)."""
  return optax.incremental_update(new, ema, step_size=1.0 - decay)


def ema_decay(train_cfg: ml_collections.ConfigDict, step: jax.Array, batch_size: int) -> jax.Array:
  """The EMA decay for the update after optimizer step `step` (int32, may be traced), float32.

  train_cfg.ema_schedule:
    "constant": train_cfg.ema_decay.
    "warmup":   min(ema_decay, (1 + step) / (10 + step)), the warm-up of many diffusion and
                classifier codebases (tf.train.ExponentialMovingAverage's num_updates).
    "stylegan": StyleGAN2(-ADA)'s half-life in images, ema_kimg = train_cfg.ema_kimg thousand
                images, ramped up over the first steps: ema_nimg = min(ema_kimg * 1000,
                step * batch * ema_rampup) when ema_rampup > 0; decay = 0.5 ** (batch / ema_nimg)
                (Karras et al. 2020, training_loop.py: ema_kimg=10, ema_rampup=0.05).
  """
  kind = train_cfg.get("ema_schedule", "constant")
  step = jnp.asarray(step, jnp.float32)
  if kind == "constant":
    return jnp.float32(train_cfg.ema_decay)
  if kind == "warmup":
    return jnp.minimum(jnp.float32(train_cfg.ema_decay), (1.0 + step) / (10.0 + step))
  nimg = jnp.float32(train_cfg.get("ema_kimg", 10.0) * 1000.0)
  rampup = train_cfg.get("ema_rampup", 0.0)
  if rampup:
    nimg = jnp.minimum(nimg, (step + 1.0) * batch_size * rampup)
  return 0.5 ** (batch_size / jnp.maximum(nimg, 1e-8))


def validate_ema(train_cfg: ml_collections.ConfigDict) -> None:
  """ConfigError for EMA settings that cannot work (called by the config check for every method)."""
  if not 0.0 <= train_cfg.ema_decay < 1.0:
    raise ConfigError(f"config.train.ema_decay={train_cfg.ema_decay} must be in [0, 1) (0 = no EMA; "
                      "e.g. 0.9999 for DDPM).")
  kind = train_cfg.get("ema_schedule", "constant")
  if kind not in EMA_SCHEDULES:
    raise ConfigError(f"config.train.ema_schedule={kind!r} is unknown; use one of {EMA_SCHEDULES}.")
  if kind == "stylegan" and (train_cfg.get("ema_kimg", 10.0) <= 0 or train_cfg.get("ema_rampup", 0.0) < 0):
    raise ConfigError(f"config.train.ema_kimg={train_cfg.get('ema_kimg')} must be > 0 and "
                      f"ema_rampup={train_cfg.get('ema_rampup')} >= 0 (StyleGAN2: 10 and 0.05).")
  if kind != "constant" and train_cfg.ema_decay == 0.0:
    raise ConfigError(f"config.train.ema_schedule={kind!r} needs an EMA: set config.train.ema_decay "
                      "> 0 (for 'stylegan' any value in (0, 1) turns the EMA on; the half-life "
                      "decides its decay).")


def step_rng(state: TrainState) -> jax.Array:
  """The key for this step: the root key folded with the step number (never reused). The loop passes
  it to train_step; methods use the `rng` argument they are given."""
  return jax.random.fold_in(state.rng, state.step)


# XLA options for functions that run once per run, such as parameter initialisation: on CPU, XLA's
# default backend optimisation (LLVM -O3) spends most of an init's compile time on the threefry bits
# of every parameter, for code that runs once. Measured on a 2-core x86 CPU: the PixelCNN++ :tiny
# init (114 parameter arrays) compiles in 26.1 s at the default level, 10.5 s at 2 and 8.0 s at 0.
# Accelerators keep their defaults (not measured there).
_RUN_ONCE_CPU_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_once(fn, **jit_kwargs):
  """jax.jit for a function that runs once (parameter initialisation): on CPU, compiled without
  backend optimisation, which makes its compile several times faster (see _RUN_ONCE_CPU_OPTIONS).
  Called inside another jit (a method's init traced by the loop's init), it is an ordinary nested
  jit and the outer one's options apply."""
  plain = jax.jit(fn, **jit_kwargs)
  if jax.default_backend() != "cpu":
    return plain
  once = jax.jit(fn, compiler_options=_RUN_ONCE_CPU_OPTIONS, **jit_kwargs)

  def call(*args, **kwargs):
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((args, kwargs)))
    return (plain if traced else once)(*args, **kwargs)
  return call
