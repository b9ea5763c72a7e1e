"""Metric writers: TensorBoard event files (CLU) plus `workdir/metrics.jsonl`, on process 0 only."""
import json
import os
from typing import Mapping

import jax
import numpy as np


class Writer:
  """Scalars to TensorBoard + JSONL; images to TensorBoard. A no-op on processes other than 0."""

  def __init__(self, workdir: str, *, filename: str = "metrics.jsonl"):
    self.active = jax.process_index() == 0
    if not self.active:
      return
    os.makedirs(workdir, exist_ok=True)
    from clu import metric_writers  # pylint: disable=g-import-not-at-top  (imports TensorFlow)
    # The summary writer alone: the trainer prints its own progress line (CLU's default writer would
    # log every scalar a second time).
    self._tb = metric_writers.SummaryWriter(workdir)
    self._jsonl = open(os.path.join(workdir, filename), "a", encoding="utf-8")

  def scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.active:
      return
    scalars = {k: float(v) for k, v in scalars.items()}
    self._tb.write_scalars(step, scalars)
    self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
    self._jsonl.flush()

  def images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
    """images: name -> uint8 [H, W, C] (one picture each)."""
    if self.active:
      self._tb.write_images(step, {k: np.asarray(v)[None] for k, v in images.items()})

  def close(self) -> None:
    if self.active:
      self._tb.flush()
      self._tb.close()
      self._jsonl.close()
