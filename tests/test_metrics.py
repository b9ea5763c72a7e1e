"""Metric arithmetic (no network): FID / IS / KID / precision-recall against independent references."""
import numpy as np
import pytest
import scipy.linalg

from jaxgen import metrics


def _gaussian(rng, n, d, mean, cov_sqrt):
  return rng.standard_normal((n, d)) @ cov_sqrt.T + mean


def test_accumulator_streams_exact_mean_and_cov():
  rng = np.random.RandomState(0)
  x = rng.standard_normal((257, 16)) * 3 + 5
  acc = metrics.FeatureAccumulator(keep_features=True)
  for i in range(0, len(x), 50):  # uneven batches
    acc.update(x[i:i + 50].astype(np.float32))
  x64 = x.astype(np.float32).astype(np.float64)
  np.testing.assert_allclose(acc.mean(), x64.mean(0), rtol=1e-12)
  np.testing.assert_allclose(acc.cov(), np.cov(x64, rowvar=False), rtol=1e-9)
  assert acc.features.shape == (257, 16)


def test_fid_matches_scipy_and_gaussian_closed_form():
  rng = np.random.RandomState(1)
  d = 8
  a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
  s1, s2 = a @ a.T + np.eye(d), b @ b.T + 0.5 * np.eye(d)
  mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
  ref = (np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2)
         - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)  # pytorch-fid's formula
  assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)
  # Isotropic Gaussians: ||mu1 - mu2||^2 + d (s1 - s2)^2 for std s1, s2.
  fd = metrics.frechet_distance(np.zeros(d), 4 * np.eye(d), np.ones(d), np.eye(d))
  assert fd == pytest.approx(d + d * (2 - 1) ** 2, rel=1e-12)
  # Of a set with itself ~0, even with a singular covariance (fewer samples than dimensions).
  feats = rng.standard_normal((20, 64))
  mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
  # (each numerically-zero eigenvalue ~1e-16 contributes its sqrt ~1e-8; tr(sigma) is ~64)
  assert abs(metrics.frechet_distance(mu, sigma, mu, sigma)) < 1e-5


def test_fid_of_samples_approaches_closed_form():
  rng = np.random.RandomState(2)
  d = 4
  acc1, acc2 = metrics.FeatureAccumulator(), metrics.FeatureAccumulator()
  acc1.update(_gaussian(rng, 200_000, d, np.zeros(d), np.eye(d)))
  acc2.update(_gaussian(rng, 200_000, d, np.full(d, 0.5), 2 * np.eye(d)))
  fd = metrics.frechet_distance(acc1.mean(), acc1.cov(), acc2.mean(), acc2.cov())
  assert fd == pytest.approx(d * 0.25 + d * 1.0, abs=0.05)


def test_inception_score_uniform_and_reference():
  assert metrics.inception_score(np.zeros((100, 1008)))[0] == pytest.approx(1.0, abs=1e-12)
  # Confident predictions spread evenly over C classes in every split: IS = C.
  logits = np.full((200, 1008), -1e4)
  logits[np.arange(200), np.arange(200) % 5] = 0
  assert metrics.inception_score(logits, shuffle=False) == pytest.approx((5.0, 0.0), abs=1e-9)
  # Against an independent computation (scipy entropy) of torch-fidelity's procedure.
  rng = np.random.RandomState(3)
  logits = rng.standard_normal((300, 1008)) * 3
  p = scipy.special.softmax(logits[np.random.RandomState(2020).permutation(300)], axis=1)
  ref = [np.exp(np.mean([scipy.stats.entropy(q, part.mean(0)) for q in part]))
         for part in np.array_split(p, 10)]
  mean, std = metrics.inception_score(logits)
  assert (mean, std) == pytest.approx((np.mean(ref), np.std(ref)), rel=1e-9)


def _kid_reference(x, y):
  """Unbiased MMD^2 written as explicit double sums (one subset = the whole sets)."""
  d = x.shape[1]
  k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
  m = len(x)
  xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
  return xx + yy - 2 * xy


def test_kid_against_explicit_sums_and_zero_for_same_distribution():
  rng = np.random.RandomState(4)
  x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5)) + 0.7
  mean, std = metrics.kid(x, y, num_subsets=3, subset_size=30)  # subsets = permutations: same value
  assert mean == pytest.approx(_kid_reference(x, y), rel=1e-9) and std < 1e-9
  big_a, big_b = rng.standard_normal((1500, 8)), rng.standard_normal((1500, 8))
  mean, std = metrics.kid(big_a, big_b, num_subsets=10, subset_size=1000)
  assert abs(mean) < 3 * std + 1e-3
  assert metrics.kid(big_a, big_b + 1.0, num_subsets=10, subset_size=1000)[0] > 0.1
  with pytest.raises(ValueError, match="subset_size=1000"):
    metrics.kid(x, y)


def test_precision_recall_known_answers():
  # Real: a 10x10 unit grid; k=3 radii are 1 (3rd neighbour at distance 1) or sqrt(2).
  g = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
  inside = g[:50] + 0.3                   # all within 1 of a grid point
  far = np.full((50, 2), 100.0) + np.arange(50)[:, None] * 3.0  # isolated, spaced 3*sqrt2 apart
  fake = np.concatenate([inside, far])
  p, r = metrics.precision_recall(g, fake, k=3)
  assert p == pytest.approx(0.5)
  # Fake manifold: the shifted rows y=0..4 (radius 1, sqrt2 at corners) plus far points (radius >= 8.5,
  # 100 away). Real rows y=0..4 lie 0.42 from their shifted copy, row 5 lies 0.76 from (x+.3, 4.3),
  # row 6 is >= 1.73 from every shifted point: 60 of 100 real points are covered.
  assert r == pytest.approx(0.6)
  p, r = metrics.precision_recall(g, g + 0.01, k=3)
  assert (p, r) == (1.0, 1.0)


def test_bad_inputs_give_clear_errors():
  acc = metrics.FeatureAccumulator()
  acc.update(np.ones((1, 4)))
  with pytest.raises(ValueError, match="at least 2 samples"):
    acc.cov()
  with pytest.raises(ValueError, match="keep_features"):
    _ = acc.features
  with pytest.raises(ValueError, match="mismatched"):
    metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
  with pytest.raises(TypeError, match="float images"):
    metrics.to_uint8(np.zeros((2, 4, 4, 3), np.uint8))
  with pytest.raises(ValueError, match="NaN"):
    metrics.to_uint8(np.full((1, 2, 2, 1), np.nan, np.float32))


def test_to_uint8_rounding():
  x = np.array([-1.5, -1.0, -0.996, 0.0, 0.5, 1.0, 2.0], np.float32)
  np.testing.assert_array_equal(metrics.to_uint8(x), [0, 0, 1, 128, 191, 255, 255])
