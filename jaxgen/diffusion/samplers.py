"""Reverse-process samplers: DDPM ancestral sampling and DDIM (Song et al. 2021), as one `lax.scan` each.

A sampler takes `model_fn(x_t [B, ...], t int32 [B]) -> network output` (the objective's prediction;
wrap it with jaxgen.diffusion.guidance for classifier-free guidance), the starting noise x_T and a key.
The noise added at timestep t is `normal(fold_in(rng, t))`, so DDPM and DDIM (eta = 1, all T steps)
draw exactly the same numbers and their paths can be compared one to one.

eta and the guidance scales are traced arguments: jit a sampler once per (number of steps, batch)
and change them without recompiling. The number of steps is static (it is the scan length).
With progress=True, loops of 100 steps or more log a progress bar from inside the compiled loop
(10 lines per run, on process 0).
"""
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import progress as progress_lib
from jaxgen.diffusion.process import Process

ModelFn = Callable[[jax.Array, jax.Array], jax.Array]
# grad_x log p(y | x_t, t) for the labels being sampled: (x_t [B, ...], t [B]) -> [B, ...].
GradFn = Callable[[jax.Array, jax.Array], jax.Array]

SKIP_TYPES = ("uniform", "quad")
PROGRESS_MIN_STEPS = progress_lib.MIN_STEPS


def ddim_timesteps(num_timesteps: int, steps: int, skip_type: str = "uniform") -> np.ndarray:
  """The DDIM paper's sub-sequence tau of timesteps, increasing int32 [steps] in [0, T).

  uniform: 0, c, 2c, ... with c = T // steps (the paper's "linear"; equals range(0, T, c) when steps
  divides T). quad: int((i / (steps - 1) * sqrt(0.8 T))^2) (the paper's CIFAR-10 choice); it repeats
  small timesteps for large `steps`, which costs steps but is harmless (a zero-length step).
  """
  if not 1 <= steps <= num_timesteps:
    raise ValueError(f"DDIM steps={steps} must be in [1, T={num_timesteps}].")
  if skip_type == "uniform":
    seq = np.arange(steps) * (num_timesteps // steps)
  elif skip_type == "quad":
    seq = (np.linspace(0, np.sqrt(num_timesteps * 0.8), steps) ** 2).astype(np.int64)
  else:
    raise ValueError(f"Unknown DDIM skip_type {skip_type!r}; use one of {SKIP_TYPES}.")
  return seq.astype(np.int32)


def _full(t: jax.Array, batch: int) -> jax.Array:
  return jnp.full((batch,), t, jnp.int32)


def ddpm_step(process: Process, model_fn: ModelFn, x: jax.Array, t: jax.Array, noise: jax.Array, *,
              var_type: str = "fixed_large", clip: bool = True, grad_fn: Optional[GradFn] = None,
              classifier_scale: jax.Array | float = 0.0) -> jax.Array:
  """One step of DDPM Algorithm 2: x_t [B, ...] at scalar timestep t -> x_{t-1}, using `noise`
  (standard normal, like x; ignored at t = 0, where x_0 is the mean).

  var_type: "fixed_large" (sigma^2 = beta_t) or "fixed_small" (sigma^2 = beta-tilde_t).
  clip: clip the predicted x_0 to [-1, 1] before forming the mean (the reference code does).
  grad_fn, classifier_scale: classifier guidance (Dhariwal & Nichol Algorithm 1): the mean moves by
  scale * sigma_t^2 * grad log p(y | x_t).
  """
  tb = _full(t, x.shape[0])
  mean, _ = process.p_mean(x, tb, model_fn(x, tb), clip)
  log_var = process.model_log_variance(var_type, tb, x.ndim)
  if grad_fn is not None:
    mean = mean + classifier_scale * jnp.exp(log_var) * grad_fn(x, tb)
  return mean + (t > 0) * jnp.exp(0.5 * log_var) * noise


def ddpm_sample(process: Process, model_fn: ModelFn, x_T: jax.Array, rng: jax.Array, *,
                var_type: str = "fixed_large", clip: bool = True, grad_fn: Optional[GradFn] = None,
                classifier_scale: jax.Array | float = 0.0, progress: bool = False) -> jax.Array:
  """DDPM ancestral sampling over all T steps (`ddpm_step` in a scan). x_T [B, ...] standard normal
  -> x_0 [B, ...]."""
  total = process.num_timesteps

  def step(x, t):
    if progress_lib.wanted(progress, total):
      progress_lib.in_loop(total - 1 - t, total, "DDPM sampling")
    noise = jax.random.normal(jax.random.fold_in(rng, t), x.shape, x.dtype)
    return ddpm_step(process, model_fn, x, t, noise, var_type=var_type, clip=clip, grad_fn=grad_fn,
                     classifier_scale=classifier_scale), None

  x, _ = jax.lax.scan(step, x_T, jnp.arange(process.num_timesteps - 1, -1, -1))
  return x


def _alpha_bar(process: Process, t: jax.Array) -> jax.Array:
  """alphabar_t with alphabar_{-1} = 1 (the clean end of the chain)."""
  return jnp.where(t < 0, 1.0, process.alphas_cumprod[jnp.maximum(t, 0)])


def ddim_sample(process: Process, model_fn: ModelFn, x_T: jax.Array, rng: jax.Array,
                timesteps: np.ndarray, *, eta: jax.Array | float = 0.0, clip: bool = True,
                grad_fn: Optional[GradFn] = None,
                classifier_scale: jax.Array | float = 0.0, progress: bool = False) -> jax.Array:
  """DDIM's generalised update (eq. 12) over `timesteps` (increasing, from `ddim_timesteps`).

  x_{t'} = sqrt(abar_t') x0 + sqrt(1 - abar_t' - sigma^2) eps + sigma z,
  sigma = eta * sqrt((1 - abar_t') / (1 - abar_t)) * sqrt(1 - abar_t / abar_t'),
  where t' is the previous timestep of the sequence (the last step goes to abar = 1, i.e. x0).
  eta = 0 is deterministic; eta = 1 with all T steps is DDPM with beta-tilde variances.
  Classifier guidance as Dhariwal & Nichol Algorithm 2: eps <- eps - sqrt(1 - abar_t) scale grad.
  """
  batch = x_T.shape[0]
  ts = jnp.asarray(timesteps[::-1], jnp.int32)
  ts_prev = jnp.asarray(np.append(-1, timesteps[:-1])[::-1], jnp.int32)

  def step(x, t_pair):
    t, t_prev, i = t_pair
    if progress_lib.wanted(progress, len(timesteps)):
      progress_lib.in_loop(i, len(timesteps), "DDIM sampling")
    tb = _full(t, batch)
    x0, eps = process.predict_x0_eps(x, tb, model_fn(x, tb))
    a, a_prev = _alpha_bar(process, t), _alpha_bar(process, t_prev)
    if grad_fn is not None:
      eps = eps - jnp.sqrt(1.0 - a) * classifier_scale * grad_fn(x, tb)
      x0 = (x - jnp.sqrt(1.0 - a) * eps) / jnp.sqrt(a)
    if clip:
      x0 = jnp.clip(x0, -1.0, 1.0)
      eps = process.eps_from_x0(x, tb, x0)
    sigma = eta * jnp.sqrt((1.0 - a_prev) / (1.0 - a) * (1.0 - a / a_prev))
    noise = jax.random.normal(jax.random.fold_in(rng, t), x.shape, x.dtype)
    x_prev = (jnp.sqrt(a_prev) * x0 + jnp.sqrt(jnp.maximum(1.0 - a_prev - sigma ** 2, 0.0)) * eps
              + sigma * noise)
    return x_prev, None

  x, _ = jax.lax.scan(step, x_T, (ts, ts_prev, jnp.arange(len(timesteps))))
  return x


def ddim_encode(process: Process, model_fn: ModelFn, x0: jax.Array, timesteps: np.ndarray) -> jax.Array:
  """The eta = 0 DDIM ODE run forwards (data -> latent x_T), the inverse of `ddim_sample(eta=0,
  clip=False)` up to the discretisation error. x0 [B, ...] -> x at timesteps[-1]. Each step evaluates
  the model at its start, except the first (from abar = 1), which uses timesteps[0]."""
  batch = x0.shape[0]
  ts_from = jnp.asarray(np.append(-1, timesteps[:-1]), jnp.int32)
  ts_to = jnp.asarray(timesteps, jnp.int32)

  def step(x, t_pair):
    t_from, t_to = t_pair
    tb = _full(jnp.where(t_from < 0, t_to, t_from), batch)
    _, eps = process.predict_x0_eps(x, tb, model_fn(x, tb))
    a_from, a_to = _alpha_bar(process, t_from), _alpha_bar(process, t_to)
    x0_pred = (x - jnp.sqrt(1.0 - a_from) * eps) / jnp.sqrt(a_from)
    return jnp.sqrt(a_to) * x0_pred + jnp.sqrt(1.0 - a_to) * eps, None

  x, _ = jax.lax.scan(step, x0, (ts_from, ts_to))
  return x
