"""TrainState: everything a run needs to continue, as one pytree of arrays (checkpointed whole)."""
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """State of any method. All leaves are arrays, so orbax saves and restores it onto any mesh.

  Attributes:
    step: int32 scalar, number of optimizer steps taken.
    params: trainable parameters. Two-player methods use a dict of players,
      e.g. {"generator": ..., "discriminator": ...}.
    opt_state: optax state(s), same top-level structure as `params` for multi-player methods.
    ema_params: exponential moving average of `params` (or of the part that is sampled from), or None.
    model_state: non-trainable Flax collections (e.g. {"batch_stats": ...}); {} if none.
    rng: the run's root PRNG key (raw uint32 key data). Never consumed directly: the trainer passes
      `jax.random.fold_in(rng, step)` to each step, so a resumed run draws the same numbers.
  """
  step: jax.Array
  params: PyTree
  opt_state: PyTree
  ema_params: PyTree
  model_state: PyTree
  rng: jax.Array

  def apply_gradients(self, tx: optax.GradientTransformation, grads: PyTree,
                      ema_decay: float = 0.0) -> "TrainState":
    """One optimizer step of the single-player case: params and opt_state updated by `tx`, the EMA
    (if kept) moved toward the new params, step + 1."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params)
    params = optax.apply_updates(self.params, updates)
    ema = self.ema_params
    if ema is not None:
      ema = ema_update(ema, params, ema_decay)
    return self.replace(step=self.step + 1, params=params, opt_state=opt_state, ema_params=ema)

  @classmethod
  def create(cls, *, params, opt_state, rng, ema_params=None, model_state=None) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
               ema_params=ema_params, model_state={} if model_state is None else model_state,
               rng=rng)


def ema_update(ema: PyTree, new: PyTree, decay: float) -> PyTree:
  """ema <- decay * ema + (1 - decay) * new, leaf-wise (float32)."""
  return optax.incremental_update(new, ema, step_size=1.0 - decay)


def step_rng(state: TrainState) -> jax.Array:
  """The key for this step: the root key folded with the step number (never reused)."""
  return jax.random.fold_in(state.rng, state.step)
