"""Reference statistics (computed once per dataset/split/resolution/count, cached) and `compute`."""
import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile
import time
from typing import Any, Dict, Iterable, Optional, Sequence

import numpy as np

from jaxgen.metrics import preprocess, scores, weights as weights_lib

METRICS = ("fid", "is", "kid", "pr")


@dataclasses.dataclass
class ReferenceStats:
  """mu [2048] / sigma [2048, 2048] float64 of real pool3 features; features [N, 2048] for KID / PR."""
  mu: np.ndarray
  sigma: np.ndarray
  features: Optional[np.ndarray] = None
  provenance: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def save(self, path: os.PathLike) -> None:
    """Standard `.npz` (`mu`, `sigma`, as pytorch-fid / clean-fid) plus features and provenance."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"mu": self.mu, "sigma": self.sigma,
              "provenance": np.array(json.dumps(self.provenance, sort_keys=True))}
    if self.features is not None:
      arrays["features"] = self.features
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
      np.savez(f, **arrays)
    os.replace(f.name, path)  # atomic: an interrupted run never leaves a half-written cache entry

  @classmethod
  def load(cls, path: os.PathLike) -> "ReferenceStats":
    """Loads our cache files or any standard FID statistics `.npz` with `mu` and `sigma`."""
    with np.load(path) as z:
      if "mu" not in z.files or "sigma" not in z.files:
        raise ValueError(f"{path} has arrays {z.files}; FID statistics need 'mu' and 'sigma'")
      mu, sigma = z["mu"].astype(np.float64), z["sigma"].astype(np.float64)
      features = z["features"] if "features" in z.files else None
      prov = json.loads(str(z["provenance"])) if "provenance" in z.files else {"file": str(path)}
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size):
      raise ValueError(f"{path}: mu {mu.shape} and sigma {sigma.shape} are not [D] and [D, D]")
    return cls(mu, sigma, features, prov)


def stats_from_features(acc: scores.FeatureAccumulator, provenance: Dict[str, Any]) -> ReferenceStats:
  """Accumulated real features -> ReferenceStats (raises when there are too few for a covariance)."""
  return ReferenceStats(acc.mean(), acc.cov(), acc.features if acc.keeps_features else None,
                        provenance)


def reference_stats(data_cfg, split: str, num_examples: int, extractor,
                    keep_features: bool = True) -> ReferenceStats:
  """Statistics of real images from any jaxgen data source, cached in $JAXGEN_CACHE/fid_stats.

  The cache key covers the data config, split, sample count and the weights in use; the file records
  that provenance. num_examples=-1 means the whole split. keep_features stores the [N, 2048] float32
  features too (needed for KID and precision/recall)."""
  from jaxgen import data as jdata  # local: the data package imports TensorFlow
  cfg = data_cfg.to_dict() if hasattr(data_cfg, "to_dict") else dict(data_cfg)
  provenance = {"data": cfg, "split": split, "num_examples": num_examples,
                "inception_weights": extractor.weights_id, "keep_features": keep_features,
                "preprocess": "uint8 round((x+1)*127.5) -> TF1 bilinear 299 -> (x-128)/128"}
  key = hashlib.sha256(json.dumps(provenance, sort_keys=True, default=str).encode()).hexdigest()[:16]
  name = f"{cfg.get('name') or cfg.get('source', 'data')}_{split}_{cfg.get('image_size')}px"
  path = weights_lib.cache_dir() / "fid_stats" / f"{name}_{num_examples}_{key}.npz"
  if path.is_file():
    return ReferenceStats.load(path)
  acc = scores.FeatureAccumulator(keep_features)
  # Every process reads the whole split (process_count=1), so multi-host runs get identical
  # statistics on every process without a cross-host gather of features.
  for batch in jdata.eval_iterator(data_cfg, global_batch_size=extractor.batch_size, split=split,
                                   num_examples=num_examples, process_index=0, process_count=1):
    images = np.asarray(batch["image"])[np.asarray(batch["mask"]) > 0]
    if len(images):
      acc.update(extractor(preprocess.to_uint8(images))["pool3"])
  provenance.update(count=acc.n, created=time.strftime("%Y-%m-%d %H:%M:%S"))
  stats = stats_from_features(acc, provenance)  # raises (nothing cached) when too few images
  stats.save(path)
  return stats


class Scorer:
  """Scores generated uint8 batches as they stream in, with a state that can be saved and restored
  (so a 50k-sample evaluation resumes after preemption instead of starting over).

  names: subset of ("fid", "is", "kid", "pr"); `result()` gives fid, is_mean, is_std, kid_mean,
  kid_std, kid_subset_size, precision, recall. KID subsets shrink to the smaller set's size when it
  has fewer than kid_subset_size samples."""

  def __init__(self, names: Sequence[str], reference: ReferenceStats, extractor,
               kid_subset_size: int = 1000):
    unknown = set(names) - set(METRICS)
    if unknown:
      raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {METRICS}")
    need_feats = bool({"kid", "pr"} & set(names))
    if need_feats and reference.features is None:
      raise ValueError("KID / precision-recall need the reference features; compute the reference "
                       "with reference_stats(..., keep_features=True)")
    if "is" in names and not extractor.has_logits:
      raise ValueError(f"Inception Score needs the 1008-way logits, absent from the pool3-only trunk. "
                       f"{weights_lib.WHERE_TO_GET}")
    self.names, self.reference, self.extractor = tuple(names), reference, extractor
    self.kid_subset_size = kid_subset_size
    self.acc, self.logits = scores.FeatureAccumulator(need_feats), []

  def update(self, batch: np.ndarray) -> None:
    out = self.extractor(batch)
    self.acc.update(out["pool3"])
    if "is" in self.names:
      self.logits.append(out["logits"])

  def state_dict(self) -> dict:
    out = {f"acc_{k}": v for k, v in self.acc.state_dict().items()}
    if self.logits:
      out["logits"] = np.concatenate(self.logits)
    return out

  def load_state_dict(self, state: dict) -> None:
    self.acc.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("acc_")})
    self.logits = [state["logits"]] if "logits" in state else []

  def result(self) -> Dict[str, float]:
    acc, names, reference = self.acc, self.names, self.reference
    res: Dict[str, float] = {}
    if "fid" in names:
      res["fid"] = scores.frechet_distance(acc.mean(), acc.cov(), reference.mu, reference.sigma)
    if "is" in names:
      res["is_mean"], res["is_std"] = scores.inception_score(np.concatenate(self.logits))
    if "kid" in names:
      m = min(self.kid_subset_size, acc.n, len(reference.features))
      res["kid_mean"], res["kid_std"] = scores.kid(acc.features, reference.features, subset_size=m)
      res["kid_subset_size"] = float(m)
    if "pr" in names:
      res["precision"], res["recall"] = scores.precision_recall(reference.features, acc.features)
    return res


def compute(names: Sequence[str], fake_uint8_batches: Iterable[np.ndarray], reference: ReferenceStats,
            extractor, kid_subset_size: int = 1000) -> Dict[str, float]:
  """Streams generated uint8 batches [B, H, W, C] through the extractor and scores them (`Scorer`)."""
  scorer = Scorer(names, reference, extractor, kid_subset_size)
  for batch in fake_uint8_batches:
    scorer.update(batch)
  return scorer.result()
