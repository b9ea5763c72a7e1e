"""The interface every family implements, so one trainer, evaluator and benchmark serve all of them.

Batches are dicts of arrays, global and sharded over the mesh's batch axes:
  "image": float32 [B, H, W, C] in [-1, 1]
  "label": int32 [B]                          (datasets with classes)
  "caption_tokens": int32 [B, L]              (datasets with captions; 0 = padding)
  "mask": float32 [B], 1 = real example       (eval batches only; padding rows have 0)
  more keys where config.data asks for them (jaxgen.data: streams, low_res, ...)

What a family author writes (one model file, one method file, one config):
  init / train_step / sample / eval_step below, pure and jitted by the caller (no Python control flow
    on traced values, no host I/O);
  `cond_keys` + `default_cond` when sampling takes conditioning (labels, source or low-resolution
    images, tokens): the loop fills `cond` from `default_cond` or from eval rows, sharded like a batch;
  `frozen_parts` for pretrained networks used but not trained (another run or a weights file,
    configured in config.pretrained.<name>): the loop loads them into `state.frozen[name]`;
  `can_sample = False` for methods that draw no images (a classifier): the config check then
    rejects sample grids, sample-based metrics and --mode sample before anything compiles.
Methods import models and nn, never the trainer. Metrics a step did not compute (lazy regularisers
every k steps) are returned as NaN: the loop averages each metric over the steps that computed it
("loss" must always be finite).
"""
from typing import Any, Mapping, Optional

import jax
import ml_collections
import numpy as np

from jaxgen.errors import ConfigError  # noqa: F401  (re-exported for methods)
from jaxgen.state import TrainState

Batch = Mapping[str, jax.Array]
PyTree = Any


def cycling_labels(num: int, num_classes: int) -> np.ndarray:
  """Labels 0, 1, ..., num_classes - 1, 0, 1, ... int32 [num]: the default conditioning of
  class-conditional samplers (each row of a 10-wide grid is one class per column)."""
  return np.arange(num, dtype=np.int32) % max(num_classes, 1)


class Method:
  """Base class of all training methods.

  Subclasses get the whole run config in __init__ (model, optim, train, data sections) and must not
  touch devices there: the trainer validates configs before anything compiles.
  """
  # False for methods that draw no samples (e.g. a classifier).
  can_sample: bool = True
  # Batch keys `sample` reads from `cond` (e.g. ("label",), ("low_res",)); () = unconditional.
  cond_keys: tuple[str, ...] = ()
  # True when `init` reads the values of its example batch (data-dependent initialisation, e.g. weight
  # normalisation): on a fresh start the loop then passes the run's first training batch, not zeros.
  init_from_data: bool = False

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def validate(self) -> None:
    """Raise ConfigError for values this method cannot take (e.g. an image size the model can't
    handle). Called before any compilation. Shapes available: config.data.image_size, .channels,
    .num_classes."""

  def frozen_parts(self) -> dict[str, PyTree]:
    """Pretrained networks this run uses but does not train: name -> the expected params tree of
    jax.ShapeDtypeStruct (e.g. `jax.eval_shape` of the part's init). The loop loads each from
    config.pretrained.<name>, checks the shapes, and puts it in `state.frozen[name]`. A part with
    model state (BatchNorm) declares its whole variables dict ({"params": ..., "batch_stats": ...},
    the eval_shape of `init` itself) and receives the run's / file's running statistics too."""
    return {}

  def init(self, rng: jax.Array, example_batch: Batch) -> TrainState:
    """Initial state (with state.frozen = {}). `example_batch` has the global batch's shapes; its
    values are zeros (or, with `init_from_data`, the first training batch)."""
    raise NotImplementedError

  def train_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
    """One optimizer step. Returns (new state with step+1, dict of float32 scalar metrics, incl. "loss")."""
    raise NotImplementedError

  def sampling_params(self, state: TrainState) -> PyTree:
    """The params to sample from: the EMA when the run keeps one, else the trained params."""
    return state.params if state.ema_params is None else state.ema_params

  def default_cond(self, num: int) -> Optional[dict]:
    """Conditioning for `num` samples when no data rows are given (host numpy dict with `cond_keys`,
    e.g. labels cycling through the classes), or None when conditioning must come from data (source
    images for translation, low-resolution images for super-resolution)."""
    return None

  def sample(self, state: TrainState, rng: jax.Array, num: int, cond: Optional[Batch] = None) -> jax.Array:
    """`num` images, float32 [num, H, W, C] in [-1, 1], from `sampling_params(state)`.
    `cond`: None or a dict with `cond_keys`, arrays [num, ...]; None = `default_cond(num)`."""
    raise NotImplementedError

  def timed_functions(self) -> dict:
    """Functions of (state, batch) -> arrays that `--mode benchmark` times besides the train step,
    by name (e.g. CLIP's {"image_encode": ..., "text_encode": ...}); reported as <name>_per_s, rows
    of the batch per second. {} for most methods."""
    return {}

  def eval_step(self, state: TrainState, batch: Batch, rng: jax.Array) -> dict:
    """Per-example evaluation metrics: dict name -> float32 [B]. The evaluator averages them over
    real examples (batch["mask"]). Methods without likelihood-type metrics return {}."""
    return {}
