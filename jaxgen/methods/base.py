"""The interface every family implements, so one trainer, evaluator and benchmark serve all of them.

Batches are dicts of arrays, global and sharded over the mesh's batch axes:
  "image": float32 [B, H, W, C] in [-1, 1]
  "label": int32 [B]                          (datasets with classes)
  "caption_tokens": int32 [B, L]              (datasets with captions; 0 = padding)
  "mask": float32 [B], 1 = real example       (eval batches only; padding rows have 0)

Methods are pure: `train_step`, `sample` and `eval_step` are jitted by the caller, so they must not
do Python control flow on traced values or host I/O. Methods import models and nn, never the trainer.
"""
from typing import Any, Mapping, Optional

import jax
import ml_collections

from jaxgen.errors import ConfigError  # noqa: F401  (re-exported for methods)
from jaxgen.state import TrainState

Batch = Mapping[str, jax.Array]


class Method:
  """Base class of all training methods.

  Subclasses get the whole run config in __init__ (model, optim, train, data sections) and must not
  touch devices there: the trainer validates configs before anything compiles.
  """

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def validate(self) -> None:
    """Raise ConfigError for values this method cannot take (e.g. an image size the model can't
    handle). Called before any compilation. Shapes available: config.data.image_size, .channels,
    .num_classes."""

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    """Initial state. `example_batch` has the global batch's shapes (values unused)."""
    raise NotImplementedError

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    """One optimizer step. Returns (new state with step+1, dict of float32 scalar metrics, incl. "loss")."""
    raise NotImplementedError

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Any] = None) -> jax.Array:
    """`num` images, float32 [num, H, W, C] in [-1, 1], from the EMA params when there are any.
    `cond`: method-specific conditioning (e.g. int32 labels [num]); None = the method's default
    (e.g. labels cycling through the classes)."""
    raise NotImplementedError

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per-example evaluation metrics: dict name -> float32 [B]. The evaluator averages them over
    real examples (batch["mask"]). Methods without likelihood-type metrics return {}."""
    return {}
