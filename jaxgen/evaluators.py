"""Pluggable whole-set evaluators, named in `config.eval.evaluators` (beside the sample metrics
FID / IS / KID / PR of `config.eval.metrics` and the method's own `eval_step`).

An evaluator is a class registered by name in EVALUATORS (an import path, so asking for one imports
no other), built with the run config:

    class MyEvaluator(Evaluator):
      def validate(self): ...                          # ConfigError before anything compiles
      def __call__(self, ctx: Context) -> dict: ...    # {name: float}, merged into eval's results

`Context` gives what whole-set metrics need: the method, the state (frozen parts included) and the
mesh, `ctx.generate(num)` (samples drawn sharded by the compiled sampler, with their conditioning,
on the host), `ctx.eval_batches(split)` (one pass over a split, per-process rows, with "mask") and
`ctx.key(name)` (a key of its own per evaluator). Retrieval, zero-shot accuracy, linear probes and
PSNR / SSIM are evaluators; so is the shapes judge of the default main job.
"""
import dataclasses
import importlib
from typing import Any, Iterator, Optional

import jax
import ml_collections
import numpy as np

from jaxgen.errors import ConfigError

EVALUATORS: dict[str, str] = {
    "shapes_agreement": "jaxgen.data.shapes_judge:ShapesAgreement",
    "psnr_ssim": "jaxgen.metrics.image_quality:PSNRSSIM",
}


class Evaluator:
  """Base class: holds the run config; subclasses implement validate and __call__."""
  needs_samples: bool = True   # False for evaluators of the method's features (probes, retrieval)

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config

  def validate(self) -> None:
    """Raise ConfigError for settings this evaluator cannot take."""

  def __call__(self, ctx: "Context") -> dict:
    raise NotImplementedError


@dataclasses.dataclass
class Context:
  method: Any
  config: ml_collections.ConfigDict
  state: Any
  mesh: Any
  seed_key: jax.Array

  def key(self, name: str) -> jax.Array:
    """A key for evaluator `name`, independent of every other's."""
    return jax.random.fold_in(self.seed_key, int.from_bytes(name.encode()[:4].ljust(4, b"\0"), "little"))

  def generate(self, num: int, name: str) -> tuple[np.ndarray, Optional[dict]]:
    """`num` samples float32 [num, H, W, C] in [-1, 1] and their conditioning (host numpy)."""
    from jaxgen import sampling  # pylint: disable=g-import-not-at-top
    return sampling.generate(self.method, self.config, self.state, self.mesh, num,
                             self.config.eval.batch_size, self.key(name))

  def eval_batches(self, split: Optional[str] = None) -> Iterator[dict]:
    from jaxgen import data  # pylint: disable=g-import-not-at-top
    return data.eval_iterator(self.config.data, global_batch_size=self.config.eval.batch_size,
                              split=split, num_examples=self.config.eval.num_examples)


def create(name: str, config: ml_collections.ConfigDict) -> Evaluator:
  if name not in EVALUATORS:
    raise ConfigError(f"config.eval.evaluators names unknown evaluator {name!r}; known: "
                      f"{sorted(EVALUATORS)}.")
  module, cls = EVALUATORS[name].split(":")
  try:
    evaluator = getattr(importlib.import_module(module), cls)
  except (ImportError, AttributeError) as e:
    raise ConfigError(f"config.eval.evaluators: evaluator {name!r} ({EVALUATORS[name]}) cannot be "
                      f"imported ({e}).") from e
  return evaluator(config)


def validate(config: ml_collections.ConfigDict, can_sample: bool) -> None:
  for name in config.eval.get("evaluators", ()):
    evaluator = create(name, config)
    if evaluator.needs_samples and not can_sample:
      raise ConfigError(f"config.eval.evaluators includes {name!r}, which judges samples, but "
                        f"config.method={config.method!r} draws none; remove it.")
    evaluator.validate()


def run_all(ctx: Context) -> dict:
  """Every configured evaluator's results, in order (later names win on clashes)."""
  out = {}
  for name in ctx.config.eval.get("evaluators", ()):
    out.update(create(name, ctx.config)(ctx))
  return out
