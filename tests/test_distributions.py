"""jaxgen.distributions: the likelihoods every family shares, against closed forms and a direct numpy
transcription of the reference code."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import distributions as D

GRID = np.arange(256, dtype=np.float32) / 127.5 - 1


def _reference_mix_logistic(x, l):
  """openai/pixel-cnn discretized_mix_logistic_loss per pixel (negated), transcribed in numpy, C=3."""
  sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
  softplus = lambda v: np.logaddexp(0, v)  # noqa: E731
  nr_mix = l.shape[-1] // 10
  logit_probs = l[..., :nr_mix]
  l = l[..., nr_mix:].reshape(x.shape + (nr_mix * 3,))
  means = l[..., :nr_mix]
  log_scales = np.maximum(l[..., nr_mix:2 * nr_mix], -7.0)
  coeffs = np.tanh(l[..., 2 * nr_mix:3 * nr_mix])
  x = x[..., None] + np.zeros(x.shape + (nr_mix,))
  m2 = means[..., 1, :] + coeffs[..., 0, :] * x[..., 0, :]
  m3 = means[..., 2, :] + coeffs[..., 1, :] * x[..., 0, :] + coeffs[..., 2, :] * x[..., 1, :]
  means = np.stack([means[..., 0, :], m2, m3], axis=-2)
  c = x - means
  inv = np.exp(-log_scales)
  plus_in, min_in = inv * (c + 1 / 255), inv * (c - 1 / 255)
  cdf_delta = sig(plus_in) - sig(min_in)
  mid_in = inv * c
  log_pdf_mid = mid_in - log_scales - 2 * softplus(mid_in)
  lp = np.where(x < -0.999, plus_in - softplus(plus_in),
                np.where(x > 0.999, -softplus(min_in),
                         np.where(cdf_delta > 1e-5, np.log(np.maximum(cdf_delta, 1e-12)),
                                  log_pdf_mid - np.log(127.5))))
  lp = lp.sum(-2) + logit_probs - np.log(np.exp(logit_probs).sum(-1, keepdims=True))
  mx = lp.max(-1, keepdims=True)
  return (mx + np.log(np.exp(lp - mx).sum(-1, keepdims=True)))[..., 0]


def test_mix_logistic_equals_the_reference_transcription():
  rng = np.random.default_rng(0)
  x = GRID[rng.integers(0, 256, (2, 4, 4, 3))]
  x[0, 0, 0] = (-1, 1, 0)                  # the edge bins
  l = rng.normal(size=(2, 4, 4, 50)).astype(np.float32)
  got = D.discretized_mix_logistic_log_prob(jnp.asarray(x), jnp.asarray(l))
  np.testing.assert_allclose(np.asarray(got), _reference_mix_logistic(x.astype(np.float64), l.astype(np.float64)),
                             rtol=2e-5, atol=2e-5)


def test_mix_logistic_sums_to_one():
  rng = np.random.default_rng(1)
  l1 = jnp.asarray(rng.normal(size=(1, 1, 1, 3 * 4)), jnp.float32)   # grey, 4 components
  p1 = jnp.exp(D.discretized_mix_logistic_log_prob(jnp.asarray(GRID)[:, None, None, None],
                                                   jnp.broadcast_to(l1, (256, 1, 1, 12))))
  assert float(jnp.sum(p1)) == pytest.approx(1.0, abs=1e-4)
  # RGB, 2 components, all 256^3 values of one pixel (one red value per call).
  l3 = jnp.asarray(rng.normal(size=(20,)) * np.r_[np.ones(2), 0.3 * np.ones(18)], jnp.float32)
  gb = jnp.asarray(np.stack(np.meshgrid(GRID, GRID, indexing="ij"), -1).reshape(-1, 2))
  total = jax.jit(lambda r: jnp.sum(jnp.exp(D.discretized_mix_logistic_log_prob(
      jnp.concatenate([jnp.full((gb.shape[0], 1), r), gb], -1)[:, None, None],
      jnp.broadcast_to(l3, (gb.shape[0], 1, 1, 20))))))
  assert sum(float(total(r)) for r in GRID) == pytest.approx(1.0, abs=1e-3)


def test_mix_logistic_samples_follow_the_distribution():
  l = jnp.asarray([[2.0, 0.0, -0.5, 0.3, -3.0, -2.5]], jnp.float32)    # grey, 2 components
  s = D.sample_mix_logistic(jax.random.PRNGKey(0), jnp.broadcast_to(l, (40000, 6)), 1)
  assert s.shape == (40000, 1)
  k = np.round((np.asarray(s[:, 0]) + 1) * 127.5).astype(int)
  np.testing.assert_allclose(np.asarray(s[:, 0]), GRID[k], atol=1e-6)   # on the 8-bit grid
  probs = np.exp(np.asarray(D.discretized_mix_logistic_log_prob(
      jnp.asarray(GRID)[:, None, None, None], jnp.broadcast_to(l, (256, 6))[:, None, None])))[:, 0, 0]
  hist = np.bincount(k, minlength=256) / len(k)
  # Coarse bins (16 levels each): empirical vs exact within 4 standard errors.
  h, p = hist.reshape(16, 16).sum(1), probs.reshape(16, 16).sum(1)
  assert np.all(np.abs(h - p) <= 4 * np.sqrt(p * (1 - p) / len(k)) + 1e-3), (h, p)


def test_mix_logistic_rgb_samples_use_the_coefficients():
  """With coefficient c0 = tanh(big) ~ 1 and tiny scales, green follows red."""
  m = 1
  means = np.zeros((3, m)); log_scales = np.full((3, m), -7.0); coeffs = np.zeros((3, m))
  coeffs[0] = 20.0                                          # tanh -> 1: green mean += red
  l = np.concatenate([np.zeros(m), np.concatenate([means, log_scales, coeffs], -1).reshape(-1)])
  l = jnp.asarray(l, jnp.float32)
  l = l.at[m].set(0.5)                                     # red mean 0.5
  s = np.asarray(D.sample_mix_logistic(jax.random.PRNGKey(0), jnp.broadcast_to(l, (100, 10)), 3))
  np.testing.assert_allclose(s[:, 0], 0.5, atol=3 / 255)
  np.testing.assert_allclose(s[:, 1], s[:, 0], atol=3 / 255)
  np.testing.assert_allclose(s[:, 2], 0.0, atol=3 / 255)


def test_categorical_and_bernoulli_log_probs():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 2, 256)).astype(np.float32)
  k = rng.integers(0, 256, (3, 2))
  got = D.categorical_log_prob(jnp.asarray(GRID[k]), jnp.asarray(logits))
  want = logits[np.arange(3)[:, None], np.arange(2)[None], k] - np.log(np.exp(logits).sum(-1))
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  z = jnp.asarray([-3.0, 0.0, 2.0])
  np.testing.assert_allclose(np.asarray(D.bernoulli_log_prob(jnp.asarray([1.0, 0.0, 1.0]), z)),
                             [math.log(1 / (1 + math.exp(3))), math.log(0.5), math.log(1 / (1 + math.exp(-2)))],
                             rtol=1e-6)
