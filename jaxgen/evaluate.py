"""`--mode eval` and `--mode sample`: the method's own metrics over the eval split (e.g. negative ELBO,
NLL, bits/dim) and sample-based metrics (FID, IS, KID, precision/recall) on generated images."""
import functools
import json
import os
import time
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgen import images, parallel, writers
from jaxgen.methods.base import Method
from jaxgen.state import TrainState

EVAL_SEED = 0xE7A1


@functools.lru_cache(maxsize=None)
def _masked_sums_fn(method: Method):
  """jit(state, batch, rng) -> ({name: sum over real examples}, count). Cached per method, so periodic
  evaluation during training compiles it once."""

  @jax.jit
  def masked_sums(state, batch, rng):
    per_example = method.eval_step(state, batch, rng)
    mask = batch["mask"]
    return {k: jnp.sum(v.astype(jnp.float32) * mask) for k, v in per_example.items()}, jnp.sum(mask)

  return masked_sums


def method_metrics(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh) -> dict:
  """Averages of method.eval_step's per-example metrics over the eval split (padding excluded)."""
  from jaxgen import data  # pylint: disable=g-import-not-at-top
  example = data.example_batch(config.data, config.eval.batch_size)
  example["mask"] = np.ones((config.eval.batch_size,), np.float32)
  rng = jax.random.fold_in(jax.random.PRNGKey(config.seed), EVAL_SEED)
  if not jax.eval_shape(method.eval_step, state, parallel.abstract_batch(example, mesh), rng):
    return {}

  masked_sums = _masked_sums_fn(method)
  totals: dict[str, float] = {}
  n = 0.0
  batches = data.eval_iterator(config.data, global_batch_size=config.eval.batch_size,
                               num_examples=config.eval.num_examples)
  for i, local in enumerate(batches):
    sums, count = jax.device_get(masked_sums(state, parallel.global_batch(local, mesh),
                                             jax.random.fold_in(rng, i)))
    for k, v in sums.items():
      totals[k] = totals.get(k, 0.0) + float(v)
    n += float(count)
  return {k: v / n for k, v in totals.items()} | {"num_eval_examples": n}


def generate_batches(method: Method, state: TrainState, mesh, num: int, batch_size: int, seed: int):
  """Yields float32 [<=batch_size, H, W, C] samples in [-1, 1] on the host, `num` in all. The sampler
  compiles once (fixed batch); the last batch is cut to size."""
  from jaxgen.train import make_sample_fn  # pylint: disable=g-import-not-at-top
  sample_fn = make_sample_fn(method, mesh, batch_size)
  rng = jax.random.fold_in(jax.random.PRNGKey(seed), EVAL_SEED + 1)
  num_batches, t0 = -(-num // batch_size), time.perf_counter()
  every = -(-num_batches // 20)
  for i in range(num_batches):
    yield np.asarray(jax.device_get(sample_fn(state, jax.random.fold_in(rng, i))))[:num - i * batch_size]
    done = min(num, (i + 1) * batch_size)
    if num_batches > 1 and ((i + 1) % every == 0 or i + 1 == num_batches):
      rate = done / (time.perf_counter() - t0)
      logging.info("generated %d/%d samples, %.2f img/s, ETA %.0f s", done, num, rate,
                   (num - done) / rate)


def generate(method: Method, state: TrainState, mesh, num: int, batch_size: int, seed: int) -> np.ndarray:
  """`num` samples as one float32 [num, H, W, C] array in [-1, 1]."""
  return np.concatenate(list(generate_batches(method, state, mesh, num, batch_size, seed)))


def sample_metrics(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh) -> dict:
  """config.eval.metrics (fid, is, kid, pr) on config.eval.fid_num_samples generated images against the
  cached reference statistics of config.eval.reference_split (the training set, as in the papers)."""
  from jaxgen import metrics  # pylint: disable=g-import-not-at-top
  # Samples arrive replicated on every process; the extractor splits each batch over the whole mesh
  # (each process feeds its rows) and returns all features to every process.
  extractor = metrics.InceptionExtractor(mesh=mesh, batch_size=config.eval.batch_size)
  reference = metrics.reference_stats(config.data, config.eval.reference_split,
                                      config.eval.reference_num_examples, extractor)
  fakes = (metrics.to_uint8(x) for x in generate_batches(
      method, state, mesh, config.eval.fid_num_samples, config.eval.batch_size, config.seed))
  return metrics.compute(list(config.eval.metrics), fakes, reference, extractor)


def evaluate(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh, workdir: str,
             *, write: bool = True) -> dict:
  """All configured metrics; with write=True also `workdir/eval/metrics.json` and a sample grid."""
  step = int(jax.device_get(state.step))
  results = method_metrics(method, config, state, mesh)
  num = config.eval.num_samples
  samples = generate(method, state, mesh, num, config.eval.batch_size, config.seed) if num else None
  if config.eval.metrics:
    results |= sample_metrics(method, config, state, mesh)
  logging.info("eval at step %d: %s", step, results)
  if write and jax.process_index() == 0:
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
      json.dump({"step": step, **results}, f, indent=2)
    writer = writers.Writer(out_dir)   # TensorBoard events + eval/metrics.jsonl (history of evals)
    writer.scalars(step, results)
    if samples is not None:
      grid = images.make_grid(samples[:256])
      images.save_png(os.path.join(out_dir, f"samples_step_{step:08d}.png"), grid)
      writer.images(step, {"eval_samples": grid})
    writer.close()
  return results


def sample(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh, workdir: str,
           num: Optional[int] = None) -> str:
  """Writes `num` samples as a PNG grid and a uint8 `.npz` (key "image") to workdir/samples/."""
  num = num or config.eval.num_samples
  samples = generate(method, state, mesh, num, config.eval.batch_size, config.seed)
  step = int(jax.device_get(state.step))
  path = os.path.join(workdir, "samples", f"sample_step_{step:08d}")
  if jax.process_index() == 0:
    images.save_png(path + ".png", images.make_grid(samples[:1024]))
    np.savez_compressed(path + ".npz", image=images.to_uint8(samples))
  return path
