"""Embeddings of scalars (diffusion timesteps, noise levels) as feature vectors."""
import math

import jax
import jax.numpy as jnp


def timestep_embedding(t: jax.Array, dim: int, *, flip_sin_to_cos: bool = True,
                       downscale_freq_shift: float = 0.0, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal ("Transformer positional") embedding of timesteps.

  Frequencies are f_k = max_period ** (-k / (dim / 2 - downscale_freq_shift)), k = 0 .. dim/2 - 1;
  the embedding is [sin(t f), cos(t f)], or [cos(t f), sin(t f)] with `flip_sin_to_cos`. The defaults
  are diffusers' UNet2DModel defaults; DDPM's original code is flip_sin_to_cos=False,
  downscale_freq_shift=1.

  Args:
    t: [B] timesteps, int or float (any range; DDPM uses 0 .. T-1).
    dim: embedding size, even.
    flip_sin_to_cos: put the cosine half first.
    downscale_freq_shift: see the formula above.
    max_period: the longest period, in timesteps.

  Returns:
    float32 [B, dim], values in [-1, 1].
  """
  if dim % 2:
    raise ValueError(f"timestep_embedding needs an even dim, got dim={dim}.")
  if t.ndim != 1:
    raise ValueError(f"timestep_embedding needs timesteps of shape [B], got shape {t.shape}.")
  half = dim // 2
  # Computed in float32 whatever the model's compute dtype: bfloat16 cannot even represent t=999.
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32)
                  / (half - downscale_freq_shift))
  args = t.astype(jnp.float32)[:, None] * freqs[None, :]
  sin, cos = jnp.sin(args), jnp.cos(args)
  return jnp.concatenate([cos, sin] if flip_sin_to_cos else [sin, cos], axis=-1)
