"""The Gaussian diffusion process of DDPM (Ho et al. 2020) and improved DDPM (Nichol & Dhariwal 2021).

Timesteps are integers t in [0, T): index t holds beta_{t+1} of the papers (the papers count 1..T).
Data x_0 lives in [-1, 1]. All schedule arrays are computed in float64 with numpy (as the reference
code does, since 1 - alphabar is tiny near t = 0) and stored as float32.

Objectives (what the network predicts):
  "eps": the noise eps in x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps              (DDPM)
  "x0":  x_0 itself
  "v":   v = sqrt(abar) eps - sqrt(1 - abar) x_0                                 (Salimans & Ho 2022)
"""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.distributions import discretized_gaussian_log_prob, normal_kl

SCHEDULES = ("linear", "cosine")
OBJECTIVES = ("eps", "x0", "v")
# fixed_large: Var = beta_t (DDPM's CIFAR-10 choice); fixed_small: Var = beta-tilde_t (eq. 7).
VAR_TYPES = ("fixed_large", "fixed_small")


def linear_betas(timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
  """DDPM's schedule: betas linear from beta_start to beta_end. float64 [T]."""
  return np.linspace(beta_start, beta_end, timesteps, dtype=np.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
  """Improved DDPM eq. 17: alphabar(t) = f(t) / f(0), f(t) = cos((t/T + s) / (1 + s) * pi/2)^2,
  beta_t = min(1 - alphabar(t) / alphabar(t-1), max_beta). float64 [T]."""
  f = lambda t: math.cos((t / timesteps + s) / (1 + s) * math.pi / 2) ** 2
  return np.array([min(1 - f(i + 1) / f(i), max_beta) for i in range(timesteps)], np.float64)


def make_betas(schedule: str, timesteps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
  if schedule == "linear":
    return linear_betas(timesteps, beta_start, beta_end)
  if schedule == "cosine":
    return cosine_betas(timesteps)
  raise ValueError(f"Unknown diffusion schedule {schedule!r}; use one of {SCHEDULES}.")


def _extract(a: jax.Array, t: jax.Array, ndim: int) -> jax.Array:
  """a[t] reshaped to [B, 1, ..., 1] so that it broadcasts against a [B, ...] array of rank ndim."""
  return a[t].reshape(t.shape + (1,) * (ndim - t.ndim))


@flax.struct.dataclass
class Process:
  """Schedule arrays of one diffusion process, all float32 [T]. A pytree, so it can cross jit."""
  betas: jax.Array
  alphas_cumprod: jax.Array
  alphas_cumprod_prev: jax.Array
  posterior_variance: jax.Array
  posterior_log_variance_clipped: jax.Array
  posterior_mean_coef1: jax.Array
  posterior_mean_coef2: jax.Array
  objective: str = flax.struct.field(pytree_node=False, default="eps")

  @property
  def num_timesteps(self) -> int:
    return self.betas.shape[0]

  @classmethod
  def create(cls, betas: np.ndarray, objective: str = "eps") -> "Process":
    """From float64 betas [T] in (0, 1)."""
    if objective not in OBJECTIVES:
      raise ValueError(f"Unknown diffusion objective {objective!r}; use one of {OBJECTIVES}.")
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or not np.all((betas > 0) & (betas < 1)):
      raise ValueError("betas must be a 1-D array with values in (0, 1).")
    alphas_cumprod = np.cumprod(1.0 - betas)
    alphas_cumprod_prev = np.append(1.0, alphas_cumprod[:-1])
    # DDPM eq. 7: posterior q(x_{t-1} | x_t, x_0) = N(coef1 x_0 + coef2 x_t, beta_tilde_t).
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    # beta_tilde_0 = 0: clip its log to that of t = 1 (as the reference code; it only enters L_0).
    posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
    coef1 = betas * np.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    coef2 = (1.0 - alphas_cumprod_prev) * np.sqrt(1.0 - betas) / (1.0 - alphas_cumprod)
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    return cls(betas=f32(betas), alphas_cumprod=f32(alphas_cumprod),
               alphas_cumprod_prev=f32(alphas_cumprod_prev),
               posterior_variance=f32(posterior_variance),
               posterior_log_variance_clipped=f32(posterior_log_variance_clipped),
               posterior_mean_coef1=f32(coef1), posterior_mean_coef2=f32(coef2), objective=objective)

  @classmethod
  def from_config(cls, cfg) -> "Process":
    """From config.diffusion: schedule, timesteps, beta_start, beta_end, objective."""
    betas = make_betas(cfg.schedule, cfg.timesteps, cfg.get("beta_start", 1e-4), cfg.get("beta_end", 0.02))
    return cls.create(betas, cfg.get("objective", "eps"))

  # ---- forward process -------------------------------------------------------------------------
  def q_mean_variance(self, x0: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I). x0 [B, ...], t int [B]. Returns (mean, var)."""
    abar = _extract(self.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(abar) * x0, jnp.broadcast_to(1.0 - abar, x0.shape)

  def q_sample(self, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
    """A draw of x_t ~ q(x_t | x_0) using the given standard-normal noise (same shape as x0)."""
    abar = _extract(self.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(abar) * x0 + jnp.sqrt(1.0 - abar) * noise

  def q_posterior(self, x0: jax.Array, xt: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7). Returns (mean, variance, clipped log variance) [B, ...]."""
    mean = (_extract(self.posterior_mean_coef1, t, xt.ndim) * x0
            + _extract(self.posterior_mean_coef2, t, xt.ndim) * xt)
    var = jnp.broadcast_to(_extract(self.posterior_variance, t, xt.ndim), xt.shape)
    log_var = jnp.broadcast_to(_extract(self.posterior_log_variance_clipped, t, xt.ndim), xt.shape)
    return mean, var, log_var

  # ---- objective conversions -------------------------------------------------------------------
  def target(self, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
    """The regression target of the objective for x_t = q_sample(x0, t, noise)."""
    if self.objective == "eps":
      return noise
    if self.objective == "x0":
      return x0
    abar = _extract(self.alphas_cumprod, t, x0.ndim)
    return jnp.sqrt(abar) * noise - jnp.sqrt(1.0 - abar) * x0

  def min_snr_weight(self, t: jax.Array, gamma: float) -> jax.Array:
    """Min-SNR-gamma loss weights (Hang et al. 2023, arXiv:2303.09556), float32 [B], for this
    objective's squared error at timesteps t int [B].

    In x_0 space every objective's error is ||x0_hat - x0||^2 times a weight: SNR_t for eps,
    1 for x0, SNR_t + 1 for v (SNR_t = abar_t / (1 - abar_t)). Min-SNR replaces that x_0-space weight
    with min(SNR_t, gamma), so that the nearly noise-free steps, which eps-prediction weights by up to
    ~1e4, no longer dominate the gradient; the returned factor is min(SNR_t, gamma) / (x_0-space
    weight of the objective). The paper trains ~3.4x faster with gamma = 5."""
    abar = self.alphas_cumprod[t]
    snr = abar / (1.0 - abar)
    clipped = jnp.minimum(snr, gamma)
    if self.objective == "eps":
      return clipped / snr
    if self.objective == "x0":
      return clipped
    return clipped / (snr + 1.0)

  def predict_x0_eps(self, xt: jax.Array, t: jax.Array, output: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(x0, eps) implied by the network output for x_t at timestep t (exact inverses of `target`)."""
    abar = _extract(self.alphas_cumprod, t, xt.ndim)
    sa, s1a = jnp.sqrt(abar), jnp.sqrt(1.0 - abar)
    if self.objective == "eps":
      return (xt - s1a * output) / sa, output
    if self.objective == "x0":
      return output, (xt - sa * output) / s1a
    return sa * xt - s1a * output, s1a * xt + sa * output

  def eps_from_x0(self, xt: jax.Array, t: jax.Array, x0: jax.Array) -> jax.Array:
    abar = _extract(self.alphas_cumprod, t, xt.ndim)
    return (xt - jnp.sqrt(abar) * x0) / jnp.sqrt(1.0 - abar)

  # ---- reverse process ---------------------------------------------------------------------------
  def model_log_variance(self, var_type: str, t: jax.Array, ndim: int) -> jax.Array:
    """log Var of p(x_{t-1} | x_t), [B, 1, ...]. fixed_large uses beta_t, except beta_tilde_1 at t = 0
    (as the reference code, so that the L_0 decoder gets a sensible scale)."""
    if var_type == "fixed_large":
      log_var = jnp.log(jnp.append(self.posterior_variance[1], self.betas[1:]))
    elif var_type == "fixed_small":
      log_var = self.posterior_log_variance_clipped
    else:
      raise ValueError(f"Unknown var_type {var_type!r}; use one of {VAR_TYPES}.")
    return _extract(log_var, t, ndim)

  def p_mean(self, xt: jax.Array, t: jax.Array, output: jax.Array, clip: bool) -> tuple[jax.Array, jax.Array]:
    """Mean of p(x_{t-1} | x_t): the posterior mean at the predicted x_0 (clipped to [-1, 1] if `clip`).
    Returns (mean, predicted x0)."""
    x0, _ = self.predict_x0_eps(xt, t, output)
    if clip:
      x0 = jnp.clip(x0, -1.0, 1.0)
    mean, _, _ = self.q_posterior(x0, xt, t)
    return mean, x0

  def vlb_term(self, x0: jax.Array, xt: jax.Array, t: jax.Array, output: jax.Array, *, var_type: str,
               clip: bool) -> jax.Array:
    """L_{t} of DDPM's bound for x_t at timestep t, in bits per dimension, per example [B]:
    KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) for t > 0 and the discretised decoder's
    -log p(x_0 | x_1) for t = 0."""
    true_mean, _, true_log_var = self.q_posterior(x0, xt, t)
    model_mean, _ = self.p_mean(xt, t, output, clip)
    model_log_var = self.model_log_variance(var_type, t, xt.ndim)
    kl = normal_kl(true_mean, true_log_var, model_mean, model_log_var)
    nll = -discretized_gaussian_log_prob(x0, model_mean, 0.5 * model_log_var)
    axes = tuple(range(1, x0.ndim))
    kl, nll = jnp.mean(kl, axes) / np.log(2.0), jnp.mean(nll, axes) / np.log(2.0)
    return jnp.where(t == 0, nll, kl)

  def prior_bpd(self, x0: jax.Array) -> jax.Array:
    """KL(q(x_T | x_0) || N(0, I)) in bits per dimension, per example [B]."""
    t = jnp.full(x0.shape[:1], self.num_timesteps - 1, jnp.int32)
    mean, var = self.q_mean_variance(x0, t)
    kl = normal_kl(mean, jnp.log(var), 0.0, 0.0)
    return jnp.mean(kl, tuple(range(1, x0.ndim))) / np.log(2.0)

