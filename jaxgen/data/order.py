"""Which examples go where: the global example order, per-process slicing and flip decisions.

Pure numpy (no TensorFlow), so the arithmetic that makes training deterministic and resumable can be
read and tested on its own:

- Epoch e of the training stream is `np.random.default_rng([seed, e]).permutation(N)`.
- Global batch s holds stream positions [s*B, (s+1)*B): batches run across epoch boundaries, and
  position g is example `perm(g // N)[g % N]`.
- Process p of P gets rows [p*L, (p+1)*L) of every global batch, L = B // P; so the local batches of
  P processes concatenated are the 1-process global batch, for every step.
- Random flips and random-crop offsets are hashes of (seed, stream position), identical across resume
  and process counts.
- Named streams (data.streams) each run this scheme with their own seed, `stream_seed(seed, name)`.
"""
import functools
import zlib

import numpy as np

_FLIP_SALT = 0x5F1F
_CROP_SALT = 0xC209


def _mix64(x: np.ndarray) -> np.ndarray:
  """SplitMix64 finaliser: a bijective avalanche hash of uint64 values."""
  x = np.asarray(x, np.uint64)
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def hash_uniform(values: np.ndarray, *keys: int) -> np.ndarray:
  """Deterministic float64 uniforms in [0, 1), one per element of the int array `values`, as a
  hash of (value, keys). Different keys give independent streams."""
  with np.errstate(over="ignore"):
    h = np.asarray(values).astype(np.uint64)
    for k in keys:
      h = _mix64(h ^ _mix64(np.uint64(k % 2**64) + np.uint64(0x9E3779B97F4A7C15)))
  return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


def local_rows(global_batch_size: int, process_index: int, process_count: int) -> np.ndarray:
  """Row offsets [L] of this process inside a global batch: [p*L, (p+1)*L)."""
  if process_count < 1 or not 0 <= process_index < process_count:
    raise ValueError(f"process_index={process_index} must be in [0, process_count={process_count}).")
  if global_batch_size % process_count:
    raise ValueError(f"global_batch_size={global_batch_size} is not divisible by "
                     f"process_count={process_count}; use a multiple of the process count.")
  local = global_batch_size // process_count
  return process_index * local + np.arange(local, dtype=np.int64)


def stream_seed(seed: int, name: str) -> int:
  """The seed of named stream `name` in a run seeded `seed`: a hash of (seed, crc32(name)), so that
  streams are shuffled independently, and adding, removing or reordering streams changes no other
  stream's order."""
  with np.errstate(over="ignore"):
    h = _mix64(_mix64(np.uint64(seed % 2**64)) ^ _mix64(np.uint64(zlib.crc32(name.encode()))))
  return int(h)


def positions(step: int, global_batch_size: int, process_index: int,
              process_count: int) -> np.ndarray:
  """Global stream positions [L] of this process's rows of global batch `step`: step*B + row."""
  return step * global_batch_size + local_rows(global_batch_size, process_index, process_count)


def position_rows(step: int, *, global_batch_size: int, process_index: int,
                  process_count: int) -> dict[str, np.ndarray]:
  """Rows of a source that reads nothing (source="none"): {"index": int64 [L] stream positions}."""
  return {"index": positions(step, global_batch_size, process_index, process_count)}


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """Example order of one training epoch: int64 [N], a permutation of [0, N). Cached: consecutive
  steps reuse it."""
  return np.random.default_rng([seed % 2**64, epoch]).permutation(num_examples)


def train_rows(step: int, *, num_examples: int, global_batch_size: int, seed: int,
               process_index: int, process_count: int, random_flip: bool,
               crop_range: int = 0) -> dict[str, np.ndarray]:
  """This process's rows of global training batch `step`: {"index": int64 [L] example indices in
  [0, N), "flip": bool [L]}, and iff crop_range > 0 "crop_y", "crop_x": int64 [L] random-crop
  offsets in [0, crop_range). A pure function of its arguments, so resuming at any step is O(1)."""
  if num_examples < 1:
    raise ValueError(f"Cannot iterate over an empty dataset (num_examples={num_examples}).")
  pos = positions(step, global_batch_size, process_index, process_count)
  epochs = pos // num_examples
  index = np.empty_like(pos)
  for e in np.unique(epochs).tolist():  # One or two epochs, unless B > N.
    sel = epochs == e
    index[sel] = epoch_permutation(num_examples, seed, e)[pos[sel] % num_examples]
  flip = (hash_uniform(pos, seed, _FLIP_SALT) < 0.5) if random_flip else np.zeros(len(pos), bool)
  rows = {"index": index, "flip": flip}
  if crop_range > 0:
    for axis, key in enumerate(("crop_y", "crop_x")):
      rows[key] = (hash_uniform(pos, seed, _CROP_SALT, axis) * crop_range).astype(np.int64)
  return rows


def num_eval_steps(num_examples: int, global_batch_size: int) -> int:
  """Global batches in one eval pass: ceil(N / B)."""
  return -(-num_examples // global_batch_size)


def eval_rows(step: int, *, num_examples: int, global_batch_size: int, process_index: int,
              process_count: int) -> dict[str, np.ndarray]:
  """This process's rows of eval batch `step` (index order, the last global batch padded):
  {"index": int64 [L] (padding rows point at example 0), "mask": float32 [L] (1 real, 0 padding)}."""
  pos = positions(step, global_batch_size, process_index, process_count)
  real = pos < num_examples
  return {"index": np.where(real, pos, 0), "mask": real.astype(np.float32)}
