"""SimCLR's augmentations (Chen et al. 2020, appendix A; google-research/simclr tf2/data_util.py) in JAX.

Batched and pure: `simclr_augment(key, images)` augments a whole [B, H, W, C] batch (each image with
its own draws from `key`), jit-able, so methods call it inside train_step with keys from the step rng.
Images are float RGB in [0, 1] here (the ops' natural range, as data_util.py); `simclr_view` takes and
returns jaxgen's [-1, 1].

The pipeline (data_util.preprocess_for_train, then batch_random_blur):
  random resized crop: area fraction U(0.08, 1), aspect ratio w/h log-uniform in (3/4, 4/3), up to
    `attempts` tries per image, the first that fits is used; none fits -> the whole image (what
    tf.image.sample_distorted_bounding_box returns after max_attempts, and for square images the same
    as torchvision's centre-crop fallback); the crop is resized back to H x W (bicubic as
    data_util.crop_and_resize, or bilinear), sampled from the full image with half-pixel centres, so
    resampling taps at the crop's border read the pixel just outside it where TF's crop-then-resize
    repeats the border pixel (a sub-pixel difference);
  horizontal flip p = 0.5;
  colour jitter p = 0.8 (color_jitter_rand): brightness 0.8 s (multiplicative, "simclrv2"), contrast
    0.8 s, saturation 0.8 s, hue 0.2 s, in a random order per image, clipped to [0, 1] after each;
  grayscale p = 0.2 (tf.image.rgb_to_grayscale, tiled to 3 channels);
  Gaussian blur p = 0.5 (ImageNet only): kernel side // 10 (made odd: 2 * (k // 2) + 1), sigma
    U(0.1, 2.0), separable, zero ('SAME') padding as data_util.gaussian_blur; then clip to [0, 1].
The single ops (adjust_brightness / contrast / saturation / hue, rgb_to_grayscale) equal TF's
tf.image ops for the same parameters (tests/test_augment.py).
"""

import jax
import jax.numpy as jnp

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)   # tf.image.rgb_to_grayscale


# ----------------------------------------------------------------------------------------------
# Single ops, one parameter per image ([B] arrays), images float32 [B, H, W, 3] in [0, 1].

def _per_image(v: jax.Array) -> jax.Array:
  return jnp.asarray(v, jnp.float32).reshape(-1, 1, 1, 1)


def adjust_brightness_mult(x: jax.Array, factor: jax.Array) -> jax.Array:
  """SimCLR v2's brightness: x * factor."""
  return x * _per_image(factor)


def adjust_contrast(x: jax.Array, factor: jax.Array) -> jax.Array:
  """tf.image.adjust_contrast: (x - mean) * factor + mean, the mean per image and channel."""
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  return (x - mean) * _per_image(factor) + mean


def rgb_to_grayscale(x: jax.Array) -> jax.Array:
  """tf.image.rgb_to_grayscale: [B, H, W, 3] -> [B, H, W, 1]."""
  return jnp.sum(x * jnp.asarray(GRAY_WEIGHTS, x.dtype), axis=-1, keepdims=True)


def rgb_to_hsv(x: jax.Array) -> jax.Array:
  """tf.image.rgb_to_hsv: h, s, v in [0, 1] (h = 0 for greys; s = 0 for black)."""
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  v = jnp.max(x, -1)
  rng = v - jnp.min(x, -1)
  s = jnp.where(v > 0, rng / jnp.where(v > 0, v, 1.0), 0.0)
  safe = jnp.where(rng > 0, rng, 1.0)
  h = jnp.where(v == r, (g - b) / safe,
                jnp.where(v == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe)) / 6.0
  h = jnp.where(rng > 0, h, 0.0)
  h = jnp.where(h < 0, h + 1.0, h)
  return jnp.stack([h, s, v], -1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
  """tf.image.hsv_to_rgb (h in [0, 1])."""
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  dh = h * 6.0
  r = jnp.clip(jnp.abs(dh - 3.0) - 1.0, 0.0, 1.0)
  g = jnp.clip(2.0 - jnp.abs(dh - 2.0), 0.0, 1.0)
  b = jnp.clip(2.0 - jnp.abs(dh - 4.0), 0.0, 1.0)
  rgb = jnp.stack([r, g, b], -1)
  return ((rgb - 1.0) * s[..., None] + 1.0) * v[..., None]


def adjust_saturation(x: jax.Array, factor: jax.Array) -> jax.Array:
  """tf.image.adjust_saturation: s <- clip(s * factor, 0, 1) in HSV."""
  hsv = rgb_to_hsv(x)
  s = jnp.clip(hsv[..., 1] * _per_image(factor)[..., 0], 0.0, 1.0)
  return hsv_to_rgb(hsv.at[..., 1].set(s))


def adjust_hue(x: jax.Array, delta: jax.Array) -> jax.Array:
  """tf.image.adjust_hue: h <- (h + delta) mod 1, delta in [-0.5, 0.5]."""
  hsv = rgb_to_hsv(x)
  h = jnp.mod(hsv[..., 0] + _per_image(delta)[..., 0], 1.0)
  return hsv_to_rgb(hsv.at[..., 0].set(h))


# ----------------------------------------------------------------------------------------------
# Random ops.

def _bernoulli(key: jax.Array, p: float, b: int) -> jax.Array:
  return jax.random.uniform(key, (b,)) < p


def _where_images(mask: jax.Array, a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.where(mask.reshape(-1, 1, 1, 1), a, b)


def crop_boxes(key: jax.Array, b: int, height: int, width: int, scale=(0.08, 1.0),
               ratio=(3.0 / 4.0, 4.0 / 3.0), attempts: int = 10) -> jax.Array:
  """Random resized crop boxes, int32 [B, 4] = (top, left, h, w) (module docstring)."""
  ka, kr, ky, kx = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(ka, (b, attempts), minval=scale[0], maxval=scale[1])
  log_r = jax.random.uniform(kr, (b, attempts), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  r = jnp.exp(log_r)
  w = jnp.round(jnp.sqrt(area * r)).astype(jnp.int32)
  h = jnp.round(jnp.sqrt(area / r)).astype(jnp.int32)
  ok = (w >= 1) & (h >= 1) & (w <= width) & (h <= height)
  first = jnp.argmax(ok, axis=1)
  found = jnp.any(ok, axis=1)
  pick = lambda v: jnp.take_along_axis(v, first[:, None], 1)[:, 0]
  h = jnp.where(found, pick(h), height)
  w = jnp.where(found, pick(w), width)
  top = jnp.floor(jax.random.uniform(ky, (b,)) * (height - h + 1)).astype(jnp.int32)
  left = jnp.floor(jax.random.uniform(kx, (b,)) * (width - w + 1)).astype(jnp.int32)
  return jnp.stack([top, left, h, w], -1)


def crop_and_resize(x: jax.Array, boxes: jax.Array, method: str = "cubic") -> jax.Array:
  """Each image's box (top, left, h, w) resized to the image's H x W (no antialiasing, as TF2's
  tf.image.resize); method "cubic" (Keys a = -0.5, TF's BICUBIC) or "linear"."""
  _, height, width, _ = x.shape
  boxes = boxes.astype(jnp.float32)

  def one(img, box):
    top, left, h, w = box[0], box[1], box[2], box[3]
    scale = jnp.stack([height / h, width / w])
    translation = -jnp.stack([top, left]) * scale
    return jax.image.scale_and_translate(img, (height, width, img.shape[-1]), (0, 1), scale,
                                         translation, method=method, antialias=False)
  return jax.vmap(one)(x, boxes)


def color_jitter(key: jax.Array, x: jax.Array, strength: float) -> jax.Array:
  """data_util.color_jitter_rand with impl='simclrv2' (no probability: always applied)."""
  b = x.shape[0]
  kb, kc, ks, kh, kp = jax.random.split(key, 5)
  bright, contrast, sat, hue = 0.8 * strength, 0.8 * strength, 0.8 * strength, 0.2 * strength
  fb = jax.random.uniform(kb, (b,), minval=max(1.0 - bright, 0.0), maxval=1.0 + bright)
  fc = jax.random.uniform(kc, (b,), minval=1.0 - contrast, maxval=1.0 + contrast)
  fs = jax.random.uniform(ks, (b,), minval=1.0 - sat, maxval=1.0 + sat)
  dh = jax.random.uniform(kh, (b,), minval=-hue, maxval=hue)
  order = jax.vmap(lambda k: jax.random.permutation(k, 4))(jax.random.split(kp, b))  # [B, 4]
  ops = (lambda y: adjust_brightness_mult(y, fb), lambda y: adjust_contrast(y, fc),
         lambda y: adjust_saturation(y, fs), lambda y: adjust_hue(y, dh))
  for i in range(4):
    out = x
    for j, op in enumerate(ops):
      out = _where_images(order[:, i] == j, op(x), out)
    x = jnp.clip(out, 0.0, 1.0)
  return x


def gaussian_blur(x: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
  """data_util.gaussian_blur per image (sigma [B]): separable, zero padding ('SAME')."""
  radius = kernel_size // 2
  t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  k = jnp.exp(-t[None, :] ** 2 / (2.0 * jnp.asarray(sigma, jnp.float32)[:, None] ** 2))
  k = k / jnp.sum(k, -1, keepdims=True)                       # [B, K]
  n = 2 * radius + 1
  pad = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)))
  x = sum(k[:, i, None, None, None] * pad[:, :, i:i + x.shape[2]] for i in range(n))
  pad = jnp.pad(x, ((0, 0), (radius, radius), (0, 0), (0, 0)))
  return sum(k[:, i, None, None, None] * pad[:, i:i + x.shape[1]] for i in range(n))


def simclr_augment(key: jax.Array, x: jax.Array, *, strength: float = 1.0, blur: bool = False,
                   crop: bool = True, flip: bool = True, resize_method: str = "cubic",
                   attempts: int = 10) -> jax.Array:
  """One SimCLR view of each image. x float32 [B, H, W, 3] in [0, 1] -> same shape and range.

  strength: colour distortion strength s (0.5 for CIFAR-10, 1.0 for ImageNet); 0 = no colour ops.
  blur: Gaussian blur with p = 0.5 (the paper uses it for ImageNet, not CIFAR-10).
  """
  b, height, width, _ = x.shape
  kc, kf, kj, kjp, kg, kbl, kbp = jax.random.split(key, 7)
  x = x.astype(jnp.float32)
  if crop:
    x = crop_and_resize(x, crop_boxes(kc, b, height, width, attempts=attempts), resize_method)
  if flip:
    x = _where_images(_bernoulli(kf, 0.5, b), x[:, :, ::-1], x)
  if strength > 0:
    x = _where_images(_bernoulli(kjp, 0.8, b), color_jitter(kj, x, strength), x)
    x = _where_images(_bernoulli(kg, 0.2, b), jnp.broadcast_to(rgb_to_grayscale(x), x.shape), x)
  x = jnp.clip(x, 0.0, 1.0)
  if blur:
    ks, kp = jax.random.split(kbl)
    sigma = jax.random.uniform(ks, (b,), minval=0.1, maxval=2.0)
    x = _where_images(_bernoulli(kbp, 0.5, b), gaussian_blur(x, sigma, max(height // 10, 1)), x)
    x = jnp.clip(x, 0.0, 1.0)
  return x


def simclr_view(key: jax.Array, images: jax.Array, **kwargs) -> jax.Array:
  """`simclr_augment` on jaxgen images float [-1, 1] -> float32 [-1, 1]."""
  return simclr_augment(key, (images.astype(jnp.float32) + 1.0) * 0.5, **kwargs) * 2.0 - 1.0
