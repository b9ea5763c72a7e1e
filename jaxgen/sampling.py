"""The compiled sampler, shared by training (sample grids), eval (FID samples), sample and benchmark.

Samples are split over the mesh's batch axes: each device draws num / devices of them (the output
sharding propagates back through the method's sampler, noise included), conditioning rows arrive
sharded the same way, and samples reach the host only when asked (`to_host`). Frozen networks reach
the sampler inside the state, as arguments.
"""
import functools
import itertools
from typing import Iterator, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxgen import images, parallel, progress
from jaxgen.errors import ConfigError
from jaxgen.methods.base import Method
from jaxgen.state import TrainState

# A method's `sample` may return a dict instead of the images: "image" (the samples, float32 [num, H,
# W, C]) plus GRID_TILES, float32 [num, k, H, W, C] in [-1, 1], the k tiles its grid shows for each
# row (e.g. CycleGAN: input, translation and reconstruction, both ways). The tiles reach the host
# beside the conditioning (key GRID_TILES, saved in sample mode's .npz as "cond_grid_tiles").
GRID_TILES = "grid_tiles"


@functools.lru_cache(maxsize=None)
def make_sampler(method: Method, mesh, num: int):
  """jit(state, rng, cond) -> float32 [num, H, W, C] samples in [-1, 1], sharded over the batch axes.
  `cond`: None or a dict of global arrays [num, ...] sharded over the batch axes (see
  `Method.cond_keys`). Cached, so periodic sampling and evaluation reuse one compiled sampler per
  (method, mesh, num)."""
  if not method.can_sample:
    raise ConfigError(f"config.method={method.config.method!r} draws no samples.")

  def sample(state, rng, cond):
    return method.sample(state, rng, num, cond)

  return jax.jit(sample, out_shardings=parallel.batch_sharding(mesh))


def to_host(x: jax.Array) -> np.ndarray:
  """A batch-sharded global array -> the whole numpy array on every process."""
  if getattr(x, "is_fully_addressable", True):
    return np.asarray(jax.device_get(x))
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def cond_batches(method: Method, config, batch_size: int, mesh) -> Iterator[Optional[dict]]:
  """The conditioning of successive sampling batches of `batch_size` (global arrays, batch-sharded):
  the method's default (e.g. labels cycling through the classes) where it has one, else its
  `cond_keys` from the eval split's rows in order, cycling over the split; None for unconditional
  methods. With config.eval.labels, sample i of the whole sequence gets labels[i % len(labels)]."""
  if not method.cond_keys:
    while True:
      yield None
  default = method.default_cond(batch_size)
  if default is not None:
    requested = np.asarray(tuple(config.eval.get("labels", ())), np.int32)
    if not requested.size:
      cond = parallel.global_batch(parallel.local_rows(jax.tree.map(np.asarray, default)), mesh)
      while True:
        yield cond
    for start in itertools.count(0, batch_size):
      labels = requested[(start + np.arange(batch_size)) % requested.size]
      cond = jax.tree.map(np.asarray, {**default, "label": labels})
      yield parallel.global_batch(parallel.local_rows(cond), mesh)
  from jaxgen import data  # pylint: disable=g-import-not-at-top
  while True:
    for local in data.eval_iterator(config.data, global_batch_size=batch_size):
      yield parallel.global_batch({k: local[k] for k in method.cond_keys}, mesh)


def generate_batches(method: Method, config, state: TrainState, mesh, num: int, batch_size: int,
                     rng: jax.Array, start: int = 0) -> Iterator[tuple[np.ndarray, Optional[dict]]]:
  """Yields (samples float32 [<=batch_size, H, W, C] in [-1, 1], their conditioning (and the
  sampler's GRID_TILES, if it returns them) as host numpy or None), `num` samples in all, on the
  host of every process. The sampler compiles once (fixed
  batch); the last batch is cut to size. Batch i uses key fold_in(rng, i), so `start` > 0 resumes
  a run at its batch `start` with the same samples. Logs images/s and an ETA."""
  sample_fn = make_sampler(method, mesh, batch_size)
  conds = cond_batches(method, config, batch_size, mesh)
  num_batches = -(-num // batch_size)
  rate = progress.Rate("generated samples", num, num_batches - start, start * batch_size)
  for _ in range(start):
    next(conds)
  for i in range(start, num_batches):
    cond = next(conds)
    keep = num - i * batch_size
    out = sample_fn(state, jax.random.fold_in(rng, i), cond)
    views = {}
    if isinstance(out, dict):   # {"image": samples, GRID_TILES: ...}
      views = {k: to_host(v)[:keep] for k, v in out.items() if k != "image"}
      out = out["image"]
    out = to_host(out)[:keep]
    host_cond = None if cond is None else {k: to_host(v)[:keep] for k, v in cond.items()}
    if views:
      host_cond = {**(host_cond or {}), **views}
    yield out, host_cond
    rate.update(min(num, (i + 1) * batch_size))


def generate(method: Method, config, state: TrainState, mesh, num: int, batch_size: int,
             rng: jax.Array) -> tuple[np.ndarray, Optional[dict]]:
  """`num` samples as one float32 [num, H, W, C] array in [-1, 1], and their conditioning."""
  outs, conds = [], []
  for out, cond in generate_batches(method, config, state, mesh, num, batch_size, rng):
    outs.append(out)
    conds.append(cond)
  cond = None if conds[0] is None else {k: np.concatenate([c[k] for c in conds]) for k in conds[0]}
  return np.concatenate(outs), cond


def grid_inputs(cond: Optional[dict], samples: np.ndarray) -> list[np.ndarray]:
  """The image-like conditioning arrays (float [N, h, w, c], e.g. a low-resolution or source image)
  to show beside the samples in a grid."""
  if not cond:
    return []
  return [v for v in cond.values() if v.ndim == 4 and v.shape[0] == samples.shape[0]
          and np.issubdtype(v.dtype, np.floating)]


def save_grid(path: str, samples: np.ndarray, cond: Optional[dict]) -> np.ndarray:
  """Writes a PNG grid of samples ((input, output) pairs when the conditioning has images; the
  sampler's own tiles per row when it returned GRID_TILES)."""
  tiles = (cond or {}).get(GRID_TILES)
  inputs = grid_inputs(cond, samples)
  if tiles is not None:
    grid = images.make_pair_grid([tiles[:, j] for j in range(tiles.shape[1] - 1)], tiles[:, -1])
  elif inputs:
    grid = images.make_pair_grid(inputs, samples)
  else:
    grid = images.make_grid(samples)
  if jax.process_index() == 0:
    images.save_png(path, grid)
  return grid
