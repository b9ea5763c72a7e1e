"""`--mode eval` and `--mode sample`: the method's own metrics over the eval split (e.g. negative ELBO,
NLL, bits/dim), sample-based metrics (FID, IS, KID, precision/recall) on generated images, and the
configured whole-set evaluators (jaxgen.evaluators)."""
import functools
import hashlib
import json
import os
from typing import Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from jaxgen import evaluators, images, parallel, sampling, writers
from jaxgen.methods.base import Method
from jaxgen.state import TrainState

EVAL_SEED = 0xE7A1


def sample_key(config: ml_collections.ConfigDict) -> jax.Array:
  """The root key of eval / sample mode's samples (the same images for the same seed)."""
  return jax.random.fold_in(jax.random.PRNGKey(config.seed), EVAL_SEED + 1)


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


def sample_metrics(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh,
                   workdir: Optional[str] = None) -> dict:
  """config.eval.metrics (fid, is, kid, pr) on config.eval.fid_num_samples generated images against the
  cached reference statistics of config.eval.reference_split (the training set, as in the papers).

  With a workdir, the scores' running state is saved every config.eval.save_every_samples samples to
  workdir/eval/progress_*.npz (keyed by step, metrics, sample count, batch and seed), so a preempted
  evaluation resumes from there with the same samples; the file is removed when the scores are done."""
  from jaxgen import metrics  # pylint: disable=g-import-not-at-top
  ec = config.eval
  # Samples are drawn sharded and gathered to every process's host; the extractor splits each batch
  # over the whole mesh again (each process feeds its rows) and returns all features everywhere.
  extractor = metrics.InceptionExtractor(mesh=mesh, batch_size=ec.batch_size)
  reference = metrics.reference_stats(config.data, ec.reference_split, ec.reference_num_examples,
                                      extractor)
  scorer = metrics.Scorer(list(ec.metrics), reference, extractor)
  path, start, every = None, 0, 0
  if workdir and ec.get("save_every_samples", 0):
    every = max(1, ec.save_every_samples // ec.batch_size)   # in batches
    key = json.dumps([int(jax.device_get(state.step)), sorted(ec.metrics), ec.fid_num_samples,
                      ec.batch_size, config.seed, reference.provenance.get("count")])
    path = os.path.join(workdir, "eval", f"progress_{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz")
    if os.path.exists(path):
      with np.load(path) as f:
        saved = dict(f)
      start = int(saved.pop("next_batch"))
      scorer.load_state_dict(saved)
      logging.info("Resuming the sample metrics at sample %d of %d from %s.", start * ec.batch_size,
                   ec.fid_num_samples, path)
  batches = sampling.generate_batches(method, config, state, mesh, ec.fid_num_samples, ec.batch_size,
                                      sample_key(config), start=start)
  for i, (x, _) in enumerate(batches, start):
    scorer.update(metrics.to_uint8(x))
    if path and (i + 1) % every == 0 and jax.process_index() == 0:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path + ".tmp", "wb") as f:   # atomic: a kill mid-write leaves the last good file
        np.savez(f, next_batch=np.int64(i + 1), **scorer.state_dict())
      os.replace(path + ".tmp", path)
  result = scorer.result()
  if path and jax.process_index() == 0 and os.path.exists(path):
    os.remove(path)
  return result


def evaluate(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh, workdir: str,
             *, write: bool = True) -> dict:
  """All configured metrics; with write=True also `workdir/eval/metrics.json` and a sample grid."""
  step = int(jax.device_get(state.step))
  results = method_metrics(method, config, state, mesh)
  num = config.eval.num_samples if method.can_sample else 0
  samples, cond = (sampling.generate(method, config, state, mesh, num, config.eval.batch_size,
                                     sample_key(config)) if num else (None, None))
  if config.eval.metrics:
    results |= sample_metrics(method, config, state, mesh, workdir)
  results |= evaluators.run_all(evaluators.Context(method, config, state, mesh, sample_key(config)))
  logging.info("eval at step %d: %s", step, results)
  if write and jax.process_index() == 0:
    out_dir = os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
      json.dump({"step": step, **results}, f, indent=2)
    writer = writers.Writer(out_dir)   # TensorBoard events + eval/metrics.jsonl (history of evals)
    writer.scalars(step, results)
    if samples is not None:
      grid = sampling.save_grid(os.path.join(out_dir, f"samples_step_{step:08d}.png"), samples[:256],
                              None if cond is None else {k: v[:256] for k, v in cond.items()})
      writer.images(step, {"eval_samples": grid})
    writer.close()
  return results


def sample(method: Method, config: ml_collections.ConfigDict, state: TrainState, mesh, workdir: str,
           num: Optional[int] = None) -> str:
  """Writes `num` samples as a PNG grid and a uint8 `.npz` (key "image") to workdir/samples/."""
  num = num or config.eval.num_samples
  samples, cond = sampling.generate(method, config, state, mesh, num, config.eval.batch_size,
                                    sample_key(config))
  step = int(jax.device_get(state.step))
  path = os.path.join(workdir, "samples", f"sample_step_{step:08d}")
  sampling.save_grid(path + ".png", samples[:1024],
                   None if cond is None else {k: v[:1024] for k, v in cond.items()})
  if jax.process_index() == 0:
    extra = {} if cond is None else {f"cond_{k}": v for k, v in cond.items()}
    np.savez_compressed(path + ".npz", image=images.to_uint8(samples), **extra)
  return path
