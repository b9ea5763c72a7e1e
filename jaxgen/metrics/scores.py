"""Metric arithmetic on Inception features: FID, IS, KID, improved precision/recall (numpy, float64).

Protocols follow the papers / reference code: FID (Heusel et al. 2017) as pytorch-fid; IS (Salimans et
al. 2016) with 10 splits of a fixed shuffle as torch-fidelity; KID (Binkowski et al. 2018) with the
cubic polynomial kernel and the unbiased MMD over 100 subsets of 1000; precision/recall (Kynkaanniemi et
al. 2019) with k=3, here on Inception pool3 features (the paper used VGG16 fc2 features, so values are
comparable only with other pool3-based numbers).
"""
import logging
from typing import List, Optional, Tuple

import numpy as np

SEED = 2020  # torch-fidelity's default seed for the IS shuffle and the KID subsets


class FeatureAccumulator:
  """Streaming mean / covariance of feature batches (Chan et al. parallel update, float64).

  Only O(d^2) memory unless keep_features=True, which also keeps the float32 features for KID / PR."""

  def __init__(self, keep_features: bool = False):
    self.n, self._mean, self._m2 = 0, None, None
    self.keeps_features = keep_features
    self._kept: Optional[List[np.ndarray]] = [] if keep_features else None

  def update(self, feats) -> None:
    """feats: [B, D] features of one batch."""
    x = np.asarray(feats, np.float64)
    if x.ndim != 2:
      raise ValueError(f"features must be [B, D], got shape {x.shape}")
    if not len(x):
      return
    mean_b = x.mean(0)
    centred = x - mean_b
    m2_b = centred.T @ centred
    if self.n == 0:
      self.n, self._mean, self._m2 = len(x), mean_b, m2_b
    else:
      n = self.n + len(x)
      delta = mean_b - self._mean
      self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.n * len(x) / n)
      self._mean = self._mean + delta * (len(x) / n)
      self.n = n
    if self._kept is not None:
      self._kept.append(np.asarray(feats, np.float32))

  def mean(self) -> np.ndarray:
    """[D] float64."""
    if self.n == 0:
      raise ValueError("no features accumulated")
    return self._mean

  def cov(self) -> np.ndarray:
    """[D, D] float64 unbiased covariance (divides by n - 1, as numpy.cov / pytorch-fid)."""
    if self.n < 2:
      raise ValueError(f"a covariance needs at least 2 samples, got {self.n}; use more images "
                       "(FID's protocol uses 50,000; fewer than the feature size 2048 biases it)")
    if self.n <= self._m2.shape[0]:
      logging.warning("covariance from %d samples of %d-d features is singular; FID from so few "
                      "samples is strongly biased", self.n, self._m2.shape[0])
    return self._m2 / (self.n - 1)

  def state_dict(self) -> dict:
    """The accumulator as numpy arrays (for resuming a long evaluation); see load_state_dict."""
    out = {"n": np.int64(self.n)}
    if self.n:
      out |= {"mean": self._mean, "m2": self._m2}
      if self._kept is not None:
        out["features"] = np.concatenate(self._kept)
    return out

  def load_state_dict(self, state: dict) -> None:
    self.n = int(state["n"])
    self._mean, self._m2 = (state["mean"], state["m2"]) if self.n else (None, None)
    if self._kept is not None:
      self._kept = [np.asarray(state["features"], np.float32)] if self.n else []

  @property
  def features(self) -> np.ndarray:
    """[N, D] float32 (requires keep_features=True)."""
    if self._kept is None:
      raise ValueError("features were not kept; create FeatureAccumulator(keep_features=True)")
    if not self._kept:
      raise ValueError("no features accumulated")
    return np.concatenate(self._kept)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(a)
  return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)) in float64.

  tr((S1 S2)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric PSD
  matrix S1^(1/2) S2 S1^(1/2) (same eigenvalues as S1 S2): real and stable even for the singular
  covariances of few samples, where scipy's sqrtm of the non-symmetric product can go complex."""
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
    raise ValueError(f"mismatched statistics: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / "
                     f"{s2.shape}; both must come from the same feature layer")
  r = _sqrt_psd((s1 + s1.T) / 2)
  m = r @ ((s2 + s2.T) / 2) @ r
  tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def inception_score(logits, splits: int = 10, shuffle: bool = True) -> Tuple[float, float]:
  """logits [N, 1008] -> (mean, std) over `splits` of exp(E_x KL(p(y|x) || p(y)))."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or len(logits) < splits:
    raise ValueError(f"IS needs logits [N >= splits={splits}, classes], got shape {logits.shape}")
  if shuffle:
    logits = logits[np.random.RandomState(SEED).permutation(len(logits))]
  logp = logits - logits.max(1, keepdims=True)
  logp -= np.log(np.exp(logp).sum(1, keepdims=True))
  scores = []
  for part in np.array_split(logp, splits):
    p = np.exp(part)
    # 0 * log 0 = 0: classes with p(y|x) = 0 add nothing (also where p(y) = 0 and log p(y) = -inf).
    with np.errstate(divide="ignore", invalid="ignore"):
      log_py = np.log(p.mean(0))
      kl = np.where(p > 0, p * (part - log_py), 0.0).sum(1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


def kid(feats_a, feats_b, num_subsets: int = 100, subset_size: int = 1000) -> Tuple[float, float]:
  """Kernel Inception Distance: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, over random subsets.

  feats_a, feats_b: [N, D]. Returns (mean, std) over `num_subsets` subsets of `subset_size` drawn
  without replacement from each set (torch-fidelity's procedure and seed)."""
  a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
  if min(len(a), len(b)) < subset_size or subset_size < 2:
    raise ValueError(f"KID subset_size={subset_size} needs at least that many features per set, "
                     f"got {len(a)} and {len(b)}; pass a smaller subset_size or more images")
  d, m = a.shape[1], subset_size
  rng = np.random.RandomState(SEED)
  mmds = []
  for _ in range(num_subsets):
    x = a[rng.choice(len(a), m, replace=False)]
    y = b[rng.choice(len(b), m, replace=False)]
    kxx, kyy, kxy = [(p @ q.T / d + 1) ** 3 for p, q in ((x, x), (y, y), (x, y))]
    mmds.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                - 2 * kxy.mean())
  return float(np.mean(mmds)), float(np.std(mmds))


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  return np.maximum((x * x).sum(1)[:, None] - 2 * x @ y.T + (y * y).sum(1)[None], 0)


def _kth_radii(x: np.ndarray, k: int, chunk: int) -> np.ndarray:
  """Squared distance from each point to its k-th nearest other point (the point itself excluded)."""
  return np.concatenate([np.partition(_sq_dists(x[i:i + chunk], x), k, axis=1)[:, k]
                         for i in range(0, len(x), chunk)])


def _coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int) -> float:
  """Fraction of `points` inside at least one ball (centre, radius) of the estimated manifold."""
  inside = [(_sq_dists(points[i:i + chunk], centres) <= radii[None]).any(1)
            for i in range(0, len(points), chunk)]
  return float(np.concatenate(inside).mean())


def precision_recall(real_feats, fake_feats, k: int = 3, chunk: int = 1024) -> Tuple[float, float]:
  """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls; float64, chunked.

  precision: fraction of fake samples inside the real manifold; recall: real inside the fake one."""
  real, fake = np.asarray(real_feats, np.float64), np.asarray(fake_feats, np.float64)
  if min(len(real), len(fake)) <= k:
    raise ValueError(f"precision/recall with k={k} needs more than k samples per set, got "
                     f"{len(real)} real and {len(fake)} fake")
  precision = _coverage(fake, real, _kth_radii(real, k, chunk), chunk)
  recall = _coverage(real, fake, _kth_radii(fake, k, chunk), chunk)
  return precision, recall
