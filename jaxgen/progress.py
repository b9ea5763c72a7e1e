"""Progress reporting, for the long loops of every family: compiled loops (diffusion's denoising
steps, an autoregressive model's pixels) and host loops (batches of samples for FID).

`in_loop(i, total, label)` inside a `lax.scan` / `fori_loop` body logs a progress bar from a host
callback at the first step and at every tenth of the run (10 lines per run, process 0 only);
`Rate` logs done/total, items/s and an ETA from a host loop.
"""
import math
import time

import jax
from absl import logging

MIN_STEPS = 100          # loops shorter than this log nothing (callers check; see `wanted`)
_starts: dict = {}


def wanted(enabled: bool, total: int) -> bool:
  return enabled and total >= MIN_STEPS


def in_loop(i: jax.Array, total: int, label: str) -> None:
  """Call inside a compiled loop over `total` steps (i = 0 .. total - 1): logs
  `label [####------] k/total steps, elapsed, ETA` at the first step and every tenth."""
  every = math.ceil(total / 10)

  def report(i):
    done = int(i) + 1
    now = time.perf_counter()
    if done == 1:
      _starts[label] = now
    if jax.process_index() != 0:
      return
    elapsed = now - _starts.get(label, now)
    eta = elapsed / max(done - 1, 1) * (total - done) if done > 1 else float("nan")
    bar = "#" * (10 * done // total)
    logging.info("%s [%-10s] %d/%d steps, %.1f s, ETA %.1f s", label, bar, done, total, elapsed, eta)

  jax.lax.cond((i == 0) | ((i + 1) % every == 0),
               lambda: jax.debug.callback(report, i), lambda: None)


class Rate:
  """Host-side progress of `total` items done in chunks: `update(done)` logs every twentieth of the
  chunks (and the last) as `label done/total, rate/s, ETA`; `start` items were done before."""

  def __init__(self, label: str, total: int, chunks: int, start: int = 0):
    self.label, self.total, self.start = label, total, start
    self.every, self.chunks, self.t0, self.count = -(-chunks // 20), chunks, time.perf_counter(), 0

  def update(self, done: int) -> None:
    self.count += 1
    if self.chunks > 1 and (self.count % self.every == 0 or done >= self.total):
      rate = (done - self.start) / max(time.perf_counter() - self.t0, 1e-9)
      logging.info("%s %d/%d, %.2f/s, ETA %.0f s", self.label, done, self.total, rate,
                   (self.total - done) / max(rate, 1e-9))
