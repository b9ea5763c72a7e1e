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
`ctx.key(name)` (a key of its own per evaluator), and `ctx.embed(fn, split)` (one sharded pass of a
feature function over a split: what probes, kNN, zero-shot and retrieval read). Retrieval, zero-shot accuracy, linear probes and
PSNR / SSIM are evaluators; so is the shapes judge of the default main job.
"""
import dataclasses
import importlib
import functools
from typing import Any, Callable, Iterator, Optional

import jax
import ml_collections
import numpy as np

from jaxgen.errors import ConfigError

EVALUATORS: dict[str, str] = {
    "shapes_agreement": "jaxgen.data.shapes_judge:ShapesAgreement",
    "psnr_ssim": "jaxgen.metrics.image_quality:PSNRSSIM",
    "linear_probe": "jaxgen.metrics.probe:LinearProbe",
    "knn": "jaxgen.metrics.probe:KNN",
    "zero_shot": "jaxgen.metrics.contrastive:ZeroShot",
    "retrieval": "jaxgen.metrics.contrastive:Retrieval",
    "clip_score": "jaxgen.metrics.contrastive:CLIPScore",
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


  def embed(self, fn: Callable[[Any, dict], jax.Array], split: Optional[str] = None,
            keep: tuple[str, ...] = ("label", "caption_tokens")) -> tuple[np.ndarray, dict]:
    """One pass of `fn(state, batch) -> [B, D]` (e.g. a method's image or text embedding) over the
    eval split `split` (default data.eval_split), jitted once with the batch sharded over the
    mesh's batch axes like a train step. Returns (float32 [N, D] features of the real rows, in the
    split's order, on every process; {k: numpy [N, ...]} of the rows' fields named in `keep` that
    the split has). `fn` must be a stable callable (a bound method or module-level function) so the
    compiled function is reused."""
    from jaxgen import parallel  # pylint: disable=g-import-not-at-top
    from jaxgen.sampling import to_host  # pylint: disable=g-import-not-at-top
    compiled = _jit_features(fn, self.mesh)
    feats, fields = [], {k: [] for k in keep}
    for local in self.eval_batches(split):
      batch = parallel.global_batch(local, self.mesh)
      real = to_host(batch["mask"]) > 0
      feats.append(np.asarray(to_host(compiled(self.state, batch)), np.float32)[real])
      for k in keep:
        if k in batch:
          fields[k].append(to_host(batch[k])[real])
    if not feats:
      raise ConfigError(f"eval split {split or self.config.data.get('eval_split')!r} has no examples to embed.")
    return np.concatenate(feats), {k: np.concatenate(v) for k, v in fields.items() if v}


@functools.lru_cache(maxsize=None)
def _jit_features(fn, mesh):
  from jaxgen import parallel  # pylint: disable=g-import-not-at-top
  return jax.jit(fn, out_shardings=parallel.batch_sharding(mesh))


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
