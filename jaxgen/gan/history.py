"""A history buffer of generated images (Shrivastava et al. 2017, Sec. 2.3; CycleGAN Sec. 4): the
discriminator is updated on a mix of the latest fakes and fakes from earlier generators, which
reduces oscillation.

The buffer is a pytree of arrays, so it lives in the TrainState (CycleGAN keeps one per domain in
`state.model_state["history"]`): it is sharded with the state, checkpointed, and restored on resume.
`query` transcribes the reference's `util/image_pool.py` (ImagePool.query), image by image in order:
  * while fewer than `size` images are stored: store the new image and return it;
  * once full: with probability `prob` (0.5) return a stored image chosen uniformly and store the new
    one in its slot; otherwise return the new image and leave the buffer as it is.
"""
from typing import Any

import jax
import jax.numpy as jnp

Buffer = dict[str, Any]


def init(size: int, image_shape: tuple[int, ...], dtype: Any = jnp.float32) -> Buffer:
  """An empty buffer for `size` images of `image_shape` (e.g. (H, W, C)).

  Returns:
    {"images": zeros [size, *image_shape], "count": int32 scalar, the number stored (<= size)}.
  """
  if size < 0:
    raise ValueError(f"history buffer size={size} must be >= 0 (0 = no buffer).")
  return {"images": jnp.zeros((size, *image_shape), dtype), "count": jnp.zeros((), jnp.int32)}


def query(buffer: Buffer, images: jax.Array, rng: jax.Array, prob: float = 0.5
          ) -> tuple[Buffer, jax.Array]:
  """Images for the discriminator, and the updated buffer (see the module docstring).

  Args:
    buffer: from `init` (or an earlier query). A buffer of size 0 returns `images` unchanged.
    images: the latest generated images [B, *image_shape] (callers stop their gradient).
    rng: key for the draws (one uniform and one slot per image).
    prob: probability of returning a stored image once the buffer is full (the reference's 0.5).

  Returns:
    (buffer, out): out [B, *image_shape] in the buffer's dtype.
  """
  pool = buffer["images"]
  size = pool.shape[0]
  images = images.astype(pool.dtype)
  if size == 0:
    return buffer, images

  def one(buf, inputs):
    image, u, drawn_slot = inputs
    count = buf["count"]
    full = count >= size
    swap = full & (u < prob)
    # Not full: append at position `count`; full: the drawn slot (used only when swapping).
    slot = jnp.where(full, drawn_slot, count)
    stored = jax.lax.dynamic_index_in_dim(buf["images"], slot, keepdims=False)
    keep_new = swap | ~full
    new_pool = jax.lax.dynamic_update_index_in_dim(
        buf["images"], jnp.where(keep_new, image, stored), slot, 0)
    out = jnp.where(swap, stored, image)
    return {"images": new_pool, "count": jnp.minimum(count + 1, size)}, out

  # All draws up front (one uniform and one slot per image): two PRNG programs instead of one per
  # scan iteration's split, which matters for compile time with the threefry PRNG.
  k_swap, k_slot = jax.random.split(rng)
  n = images.shape[0]
  draws = (jax.random.uniform(k_swap, (n,)), jax.random.randint(k_slot, (n,), 0, size))
  return jax.lax.scan(one, buffer, (images, *draws))
