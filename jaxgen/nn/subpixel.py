"""Sub-pixel convolution's rearrangement (Shi et al. 2016, "ESPCN"): channels -> space."""
import jax


def pixel_shuffle(x: jax.Array, factor: int) -> jax.Array:
  """[B, H, W, C * r * r] -> [B, H * r, W * r, C], r = factor, with torch's PixelShuffle order:
  input channel c * r * r + i * r + j becomes output pixel (h * r + i, w * r + j) of channel c. So
  a conv kernel trained in PyTorch (OIHW -> HWIO) gives the same image here."""
  b, h, w, c = x.shape
  r = factor
  if c % (r * r):
    raise ValueError(f"pixel_shuffle: {c} channels are not divisible by factor**2 = {r * r}.")
  x = x.reshape(b, h, w, c // (r * r), r, r)
  return x.transpose(0, 1, 4, 2, 5, 3).reshape(b, h * r, w * r, c // (r * r))
