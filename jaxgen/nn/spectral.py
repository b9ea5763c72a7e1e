"""Spectral normalisation (Miyato et al. 2018, "Spectral Normalization for GANs", Alg. 1).

A layer's weight W (flattened to a matrix [fan_in, out], e.g. a [kh, kw, in, out] kernel as
[kh * kw * in, out]) is used as W / sigma(W), sigma the largest singular value, estimated by power
iteration: v = normalize(W u), u = normalize(W^T v), sigma = v^T W u, with u kept from step to step
so that one iteration per training forward pass suffices (the paper's choice). u and the last sigma
live in the "spectral" collection, i.e. in the method's `state.model_state` beside BatchNorm's
statistics: they are checkpointed and restored with the run.

  * train=True: one power iteration from the stored u; the new u and sigma are stored when the
    collection is mutable (the training pass applies D with mutable=[..., "spectral"]). A pass with
    the collection immutable (a gradient-penalty pass) iterates the same way but stores nothing.
  * train=False: no iteration; sigma = ||W u|| from the stored u (deterministic, as the reference's
    test mode).

u and v are constants for the gradient (stop_gradient), as in the reference implementation, so the
gradient of W / sigma is the paper's Eq. 12. Differs from flax.linen.SpectralNorm in the collection
name (flax puts u into "batch_stats") and in evaluation mode (flax iterates there too).
"""
from typing import Any, Callable, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.nn.linear import bias_add

COLLECTION = "spectral"


def _l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x)), eps))


def spectral_normalize(module: nn.Module, weight: jax.Array, train: bool, name: str = "kernel",
                       n_power_iterations: int = 1) -> jax.Array:
  """`weight` [..., out] (float32) divided by its estimated largest singular value.

  Creates `{name}_u` (float32 [out], unit norm, random at init) and `{name}_sigma` (float32 []) in
  `module`'s "spectral" collection; see the module docstring for train / eval behaviour.
  """
  w = weight.astype(jnp.float32).reshape(-1, weight.shape[-1])   # [fan_in, out]
  u_var = module.variable(COLLECTION, f"{name}_u", lambda: _l2_normalize(
      jax.random.normal(module.make_rng("params"), (w.shape[1],), jnp.float32)))
  sigma_var = module.variable(COLLECTION, f"{name}_sigma", lambda: jnp.ones((), jnp.float32))
  u = jax.lax.stop_gradient(u_var.value)
  w_const = jax.lax.stop_gradient(w)
  if train:
    for _ in range(n_power_iterations):
      v = _l2_normalize(w_const @ u)
      u = _l2_normalize(w_const.T @ v)
  v = jax.lax.stop_gradient(_l2_normalize(w_const @ u))
  sigma = v @ (w @ u)
  if train and module.is_mutable_collection(COLLECTION) and not module.is_initializing():
    u_var.value = u
    sigma_var.value = jax.lax.stop_gradient(sigma)
  return (weight / sigma.astype(weight.dtype)).astype(weight.dtype)


def _project(module: nn.Module, x: jax.Array, kernel_shape: tuple[int, ...], train: bool,
             op: Callable[[jax.Array, jax.Array], jax.Array]) -> jax.Array:
  """SNDense / SNConv body: the "kernel" param (normalised when module.spectral), op(x, kernel) in
  the compute dtype, then the "bias"."""
  kernel = module.param("kernel", module.kernel_init, kernel_shape, module.param_dtype)
  if module.spectral:
    kernel = spectral_normalize(module, kernel, train)
  dtype = module.dtype or jnp.result_type(x, kernel)
  y = op(x.astype(dtype), kernel.astype(dtype))
  if module.use_bias:
    y = bias_add(y, module.param("bias", module.bias_init, (module.features,), module.param_dtype))
  return y


class SNDense(nn.Module):
  """Dense layer (flax layout: kernel [in, out], bias [out]) with a spectrally normalised kernel.
  x [..., in] -> [..., features]. `spectral=False` gives the plain layer (same params, no
  "spectral" variables), so one model definition serves with and without normalisation."""
  features: int
  spectral: bool = True
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    return _project(self, x, (x.shape[-1], self.features), train,
                    lambda x, k: jax.lax.dot_general(x, k, (((x.ndim - 1,), (0,)), ((), ()))))


class SNConv(nn.Module):
  """NHWC convolution (kernel [kh, kw, in, out], bias [out]) with a spectrally normalised kernel
  (the kernel as a [kh * kw * in, out] matrix, as the paper). x [B, H, W, in] -> [B, H', W', features].

  Attributes:
    padding: ((top, bottom), (left, right)) zeros, or "SAME" / "VALID".
    spectral: False gives the plain convolution (see SNDense).
  """
  features: int
  kernel_size: Sequence[int]
  spectral: bool = True
  strides: Union[int, Sequence[int]] = 1
  padding: Any = "SAME"
  use_bias: bool = True
  dtype: Any = None
  param_dtype: Any = jnp.float32
  kernel_init: Callable[..., Any] = nn.initializers.lecun_normal()
  bias_init: Callable[..., Any] = nn.initializers.zeros

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    strides = (self.strides,) * 2 if isinstance(self.strides, int) else tuple(self.strides)
    padding = self.padding if isinstance(self.padding, str) else tuple(map(tuple, self.padding))
    return _project(self, x, (*self.kernel_size, x.shape[-1], self.features), train,
                    lambda x, k: jax.lax.conv_general_dilated(
                        x, k, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")))
