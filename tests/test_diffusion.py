"""Diffusion process, samplers and guidance against closed forms (jaxgen.diffusion)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxgen.diffusion import guidance, samplers
from jaxgen.diffusion.process import Process, cosine_betas, linear_betas
from jaxgen.distributions import discretized_gaussian_log_prob

T = 1000


@pytest.fixture(scope="module")
def linear_process() -> Process:
  return Process.create(linear_betas(T))


def gaussian_oracle(process: Process, mu: float, sigma: float):
  """The exact eps-prediction for data N(mu, sigma^2 I): E[eps | x_t]."""
  def model_fn(x, t):
    a = process.alphas_cumprod[t].reshape((-1,) + (1,) * (x.ndim - 1))
    return (x - jnp.sqrt(a) * mu) * jnp.sqrt(1 - a) / (a * sigma ** 2 + 1 - a)
  return model_fn


def test_schedules_against_hand_values():
  b = np.asarray(Process.create(linear_betas(T)).betas)
  np.testing.assert_allclose(b[[0, 1, 999]], [1e-4, 1e-4 + 0.0199 / 999, 0.02], rtol=1e-6)
  p = Process.create(linear_betas(T))
  # alphabar_3 by hand: (1 - beta_0)(1 - beta_1)(1 - beta_2).
  hand = np.prod([1 - (1e-4 + i * 0.0199 / 999) for i in range(3)])
  np.testing.assert_allclose(p.alphas_cumprod[2], hand, rtol=1e-6)
  np.testing.assert_allclose(p.alphas_cumprod[-1], np.prod(1 - np.linspace(1e-4, 0.02, T)), rtol=1e-5)
  # Cosine: alphabar_t = f(t+1) / f(0) while the 0.999 clip is inactive (improved DDPM eq. 17).
  f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2
  pc = Process.create(cosine_betas(T))
  for t in (0, 10, 500, 900):
    np.testing.assert_allclose(pc.alphas_cumprod[t], f(t + 1) / f(0), rtol=1e-5)
  assert float(pc.betas[-1]) == pytest.approx(0.999)


def test_forward_process_monte_carlo(linear_process):
  rng = np.random.default_rng(0)
  x0 = jnp.asarray(rng.uniform(-1, 1, (1, 8)), jnp.float32)
  n = 200_000
  for t in (0, 100, 999):
    noise = jax.random.normal(jax.random.PRNGKey(t), (n, 8))
    xt = linear_process.q_sample(jnp.broadcast_to(x0, (n, 8)), jnp.full((n,), t), noise)
    a = float(np.prod(1 - np.linspace(1e-4, 0.02, T)[:t + 1]))
    # Mean within 5 standard errors; variance within 5 standard errors (var of s^2 = 2 var^2 / n).
    np.testing.assert_allclose(np.mean(xt, 0), math.sqrt(a) * x0[0], atol=5 * math.sqrt((1 - a) / n))
    np.testing.assert_allclose(np.var(xt, 0), 1 - a, atol=5 * (1 - a) * math.sqrt(2 / n))


def test_posterior_matches_gaussian_conditioning(linear_process):
  """q(x_{t-1} | x_t, x_0) from Bayes' rule on q(x_{t-1} | x_0) q(x_t | x_{t-1}), in float64."""
  rng = np.random.default_rng(1)
  betas = linear_betas(T)
  abar = np.cumprod(1 - betas)
  t = np.array([1, 5, 250, 999])
  x0, xt = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
  mean, var, _ = linear_process.q_posterior(jnp.asarray(x0, jnp.float32), jnp.asarray(xt, jnp.float32),
                                            jnp.asarray(t))
  prior_var = (1 - abar[t - 1])[:, None]
  precision = 1 / prior_var + ((1 - betas[t]) / betas[t])[:, None]
  want_var = 1 / precision
  want_mean = want_var * (np.sqrt(abar[t - 1])[:, None] * x0 / prior_var
                          + np.sqrt(1 - betas[t])[:, None] * xt / betas[t][:, None])
  np.testing.assert_allclose(var, np.broadcast_to(want_var, var.shape), rtol=1e-4)
  np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("objective", ["eps", "x0", "v"])
def test_objective_conversions_invert(objective):
  p = Process.create(linear_betas(T), objective)
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x0 = jax.random.uniform(k1, (5, 4, 4, 1), minval=-1, maxval=1)
  noise = jax.random.normal(k2, x0.shape)
  t = jnp.array([0, 10, 400, 800, 999])
  xt = p.q_sample(x0, t, noise)
  x0_hat, eps_hat = p.predict_x0_eps(xt, t, p.target(x0, noise, t))
  # Recovering x0 from eps divides by sqrt(abar), 0.006 at t=999: float32 rounding grows that much.
  np.testing.assert_allclose(x0_hat, x0, atol=2e-3)
  np.testing.assert_allclose(eps_hat, noise, atol=2e-4 if objective != "eps" else 0)


@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_min_snr_weights_give_one_x0_space_loss_for_every_objective(gamma):
  """Min-SNR-gamma: for one prediction of x_0, each objective's weighted squared error equals
  min(SNR_t, gamma) * ||x0_hat - x0||^2 (Hang et al. 2023, Eq. 7), and the weights at a few t equal
  the hand formula."""
  betas = linear_betas(T)
  abar = np.cumprod(1 - betas)
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
  x0 = jax.random.uniform(k1, (4, 4, 4, 1), minval=-1, maxval=1)
  noise = jax.random.normal(k2, x0.shape)
  x0_hat = x0 + 0.1 * jax.random.normal(k3, x0.shape)   # one imperfect prediction
  t = jnp.array([5, 100, 500, 990])
  snr = abar[np.asarray(t)] / (1 - abar[np.asarray(t)])
  want = np.minimum(snr, gamma) * np.mean(np.square(np.asarray(x0_hat - x0)), axis=(1, 2, 3))
  for objective in ("eps", "x0", "v"):
    p = Process.create(betas, objective)
    xt = p.q_sample(x0, t, noise)
    # The output this objective's network gives when it predicts x0_hat at (xt, t).
    eps_hat = p.eps_from_x0(xt, t, x0_hat)
    out = {"eps": eps_hat, "x0": x0_hat,
           "v": p.target(x0_hat, eps_hat, t)}[objective]
    err = np.mean(np.square(np.asarray(out - p.target(x0, noise, t), np.float64)), axis=(1, 2, 3))
    w = np.asarray(p.min_snr_weight(t, gamma))
    np.testing.assert_allclose(w * err, want, rtol=2e-3, err_msg=objective)
  np.testing.assert_allclose(Process.create(betas, "eps").min_snr_weight(t, gamma),
                             np.minimum(snr, gamma) / snr, rtol=1e-4)


def test_vlb_terms_against_scipy(linear_process):
  """The KL term against the Gaussian KL in float64, and L_0 against scipy's normal CDF."""
  rng = np.random.default_rng(2)
  x0 = (rng.integers(0, 256, (3, 2, 2, 1)) / 127.5 - 1).astype(np.float32)
  noise = rng.normal(size=x0.shape).astype(np.float32)
  out = noise + 0.5 * rng.normal(size=x0.shape).astype(np.float32)   # an imperfect eps prediction
  p = linear_process
  for t_val in (0, 7, 600):
    t = jnp.full((3,), t_val)
    xt = p.q_sample(jnp.asarray(x0), t, jnp.asarray(noise))
    got = p.vlb_term(jnp.asarray(x0), jnp.asarray(xt), t, jnp.asarray(out), var_type="fixed_large",
                     clip=False)
    m_true, _, lv_true = p.q_posterior(x0, xt, t)
    m_model, _ = p.p_mean(jnp.asarray(xt), t, jnp.asarray(out), False)
    var_model = float(p.posterior_variance[1]) if t_val == 0 else float(p.betas[t_val])
    if t_val == 0:
      sd = math.sqrt(var_model)
      lo = np.where(x0 < -0.999, -np.inf, x0 - 1 / 255)
      hi = np.where(x0 > 0.999, np.inf, x0 + 1 / 255)
      prob = stats.norm.cdf(hi, m_model, sd) - stats.norm.cdf(lo, m_model, sd)
      want = -np.log(prob).mean((1, 2, 3)) / math.log(2)
    else:
      v1 = np.exp(np.asarray(lv_true, np.float64))
      kl = 0.5 * (np.log(var_model / v1) + (v1 + (np.asarray(m_true) - np.asarray(m_model)) ** 2)
                  / var_model - 1)
      want = kl.mean((1, 2, 3)) / math.log(2)
    np.testing.assert_allclose(got, want, rtol=2e-3)


def test_discretized_likelihood_sums_to_one():
  """Over all 256 values of a pixel the decoder's probabilities sum to 1 (edge bins open)."""
  x = jnp.arange(256, dtype=jnp.float32) / 127.5 - 1
  for mean, log_scale in ((0.1, -3.0), (-0.97, -5.0), (0.999, -1.0)):
    logp = discretized_gaussian_log_prob(x, jnp.float32(mean), jnp.float32(log_scale))
    assert float(jnp.sum(jnp.exp(logp))) == pytest.approx(1.0, abs=1e-4)


def test_ddim_eta1_all_steps_equals_ddpm_beta_tilde(linear_process):
  p = linear_process
  model_fn = gaussian_oracle(p, 0.3, 0.5)
  x_T = jax.random.normal(jax.random.PRNGKey(0), (64, 4))
  rng = jax.random.PRNGKey(1)
  seq = samplers.ddim_timesteps(T, T)
  ddim = jax.jit(lambda x, eta: samplers.ddim_sample(p, model_fn, x, rng, seq, eta=eta, clip=False))
  small = samplers.ddpm_sample(p, model_fn, x_T, rng, var_type="fixed_small", clip=False)
  large = samplers.ddpm_sample(p, model_fn, x_T, rng, var_type="fixed_large", clip=False)
  out = ddim(x_T, 1.0)
  # Same noise draws and the same update: equal up to float32 rounding over 1000 steps.
  np.testing.assert_allclose(out, small, atol=2e-4)
  assert float(jnp.max(jnp.abs(out - large))) > 0.01   # beta_t gives another path (0.025)
  assert float(jnp.max(jnp.abs(out - ddim(x_T, 0.0)))) > 0.05


def test_ddim_eta0_deterministic_and_invertible(linear_process):
  p = linear_process
  mu, sigma = 0.3, 0.5
  model_fn = gaussian_oracle(p, mu, sigma)
  seq = samplers.ddim_timesteps(T, T)
  x_T = jax.random.normal(jax.random.PRNGKey(0), (256, 4))
  dec = jax.jit(lambda x, rng: samplers.ddim_sample(p, model_fn, x, rng, seq, eta=0.0, clip=False))
  a, b = dec(x_T, jax.random.PRNGKey(1)), dec(x_T, jax.random.PRNGKey(2))
  np.testing.assert_array_equal(a, b)
  x0 = mu + sigma * jax.random.normal(jax.random.PRNGKey(3), (256, 4))
  latent = samplers.ddim_encode(p, model_fn, x0, seq)
  # The probability-flow ODE of Gaussian data is linear: x_t = sqrt(abar) mu + (x0 - mu) s_t / sigma,
  # s_t^2 = abar sigma^2 + 1 - abar. The encoder must land on it.
  ab = float(p.alphas_cumprod[-1])
  exact = math.sqrt(ab) * mu + (x0 - mu) * math.sqrt(ab * sigma ** 2 + 1 - ab) / sigma
  assert float(jnp.max(jnp.abs(latent - exact))) < 0.02   # measured 0.0095
  recon = dec(latent, jax.random.PRNGKey(4))
  # DDIM is a first-order ODE solver: the round trip error is O(1 / steps); measured max 0.0102 at
  # 1000 steps (0.099 at 100, 0.45 at 20).
  err = float(jnp.max(jnp.abs(recon - x0)))
  assert err < 0.02, err


@pytest.mark.parametrize("sampler", ["ddpm_large", "ddpm_small", "ddim_eta0", "ddim_eta0.5"])
def test_oracle_samplers_reproduce_gaussian(linear_process, sampler):
  """All T steps. With fewer DDIM steps the first-order solver is biased: measured variance 0.2445
  (200 uniform steps), 0.2443 (100 quad), 0.2370 (50 quad) for the true 0.25."""
  p = linear_process
  mu, sigma, n = 0.3, 0.5, 20_000
  model_fn = gaussian_oracle(p, mu, sigma)
  x_T = jax.random.normal(jax.random.PRNGKey(0), (n, 2))
  rng = jax.random.PRNGKey(1)
  if sampler.startswith("ddpm"):
    var_type = "fixed_large" if sampler == "ddpm_large" else "fixed_small"
    x = samplers.ddpm_sample(p, model_fn, x_T, rng, var_type=var_type, clip=False)
  else:
    eta = float(sampler.removeprefix("ddim_eta"))
    x = samplers.ddim_sample(p, model_fn, x_T, rng, samplers.ddim_timesteps(T, T), eta=eta, clip=False)
  m, v = float(jnp.mean(x)), float(jnp.var(x))
  # MC standard errors over 2n values: sigma / sqrt(2n) = 0.0025 (mean), sigma^2 sqrt(2 / 2n) = 0.0025.
  assert abs(m - mu) < 0.0125, m
  # fixed_large adds a little variance (beta_t > beta-tilde_t); DDPM's CIFAR choice, allowed 8 %.
  assert abs(v - sigma ** 2) < (0.0125 if sampler != "ddpm_large" else 0.02), v


def test_classifier_free_guidance_scales():
  labels = jnp.array([0, 1, 2])
  apply_fn = lambda x, t, y: x * (y[:, None] + 1.0) + t[:, None]   # null label 5 -> x * 6
  x, t = jnp.ones((3, 2)), jnp.arange(3)
  cond = apply_fn(x, t, labels)
  uncond = apply_fn(x, t, jnp.full((3,), 5))
  for scale, want in ((0.0, uncond), (1.0, cond), (3.0, uncond + 3 * (cond - uncond))):
    got = guidance.classifier_free(apply_fn, labels, 5, jnp.float32(scale))(x, t)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_classifier_guidance_shifts_mean(linear_process):
  """Linear classifier logits = x W: grad log p(y|x) = W_y - sum_k p_k W_k (softmax weights)."""
  p = linear_process
  rng = np.random.default_rng(3)
  w = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
  labels = jnp.array([0, 2, 1, 1])
  x = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
  grad_fn = guidance.classifier_log_prob_grad(lambda x, t: x @ w, labels)
  probs = jax.nn.softmax(x @ w)
  want_grad = w.T[labels] - probs @ w.T
  np.testing.assert_allclose(grad_fn(x, jnp.zeros(4, jnp.int32)), want_grad, rtol=1e-5, atol=1e-6)
  model_fn = gaussian_oracle(p, 0.0, 1.0)
  noise = jax.random.normal(jax.random.PRNGKey(0), x.shape)
  for t, var_type in ((500, "fixed_large"), (20, "fixed_small")):
    kw = dict(var_type=var_type, clip=False)
    base = samplers.ddpm_step(p, model_fn, x, t, noise, **kw)
    guided = samplers.ddpm_step(p, model_fn, x, t, noise, grad_fn=grad_fn, classifier_scale=2.5, **kw)
    var = float(p.betas[t] if var_type == "fixed_large" else p.posterior_variance[t])
    np.testing.assert_allclose(guided - base, 2.5 * var * want_grad, rtol=1e-4, atol=1e-7)


def test_ddim_timesteps_match_paper_code():
  np.testing.assert_array_equal(samplers.ddim_timesteps(1000, 50), np.arange(0, 1000, 20))
  quad = samplers.ddim_timesteps(1000, 10, "quad")
  want = [int(s) for s in np.linspace(0, np.sqrt(800), 10) ** 2]   # DDIM's runner code
  np.testing.assert_array_equal(quad, want)
  with pytest.raises(ValueError, match="steps=1001"):
    samplers.ddim_timesteps(1000, 1001)


def test_sampler_progress_bar_logs_and_changes_nothing(linear_process, caplog):
  """progress=True logs a bar from inside the compiled scan (first step + every tenth) and leaves the
  samples unchanged; short loops stay quiet."""
  import logging
  p = linear_process
  model_fn = gaussian_oracle(p, 0.3, 0.5)
  x_T = jax.random.normal(jax.random.PRNGKey(0), (8, 4))
  rng = jax.random.PRNGKey(1)
  seq = samplers.ddim_timesteps(T, 100)
  with caplog.at_level(logging.INFO):
    out = jax.jit(lambda x: samplers.ddim_sample(p, model_fn, x, rng, seq, progress=True))(x_T)
    jax.effects_barrier()
  lines = [r.getMessage() for r in caplog.records if "DDIM sampling" in r.getMessage()]
  assert len(lines) == 11 and "1/100 steps" in lines[0] and "[##########] 100/100 steps" in lines[-1]
  np.testing.assert_array_equal(out, samplers.ddim_sample(p, model_fn, x_T, rng, seq))
  caplog.clear()
  with caplog.at_level(logging.INFO):
    samplers.ddim_sample(p, model_fn, x_T, rng, samplers.ddim_timesteps(T, 50), progress=True)
    jax.effects_barrier()
  assert not [r for r in caplog.records if "sampling" in r.getMessage()]
  with caplog.at_level(logging.INFO):
    samplers.ddpm_sample(p, model_fn, x_T, rng, progress=True)
    jax.effects_barrier()
  lines = [r.getMessage() for r in caplog.records if "DDPM sampling" in r.getMessage()]
  assert len(lines) == 11 and "1000/1000 steps" in lines[-1]
