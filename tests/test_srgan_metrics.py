"""PSNR / SSIM on the Y channel (the SR papers' protocol) against hand values and a loop-by-loop
numpy SSIM, and the `psnr_ssim` evaluator over eval rows (padding excluded)."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import data as D
from jaxgen import evaluators, parallel
from jaxgen.configs import base_config
from jaxgen.errors import ConfigError
from jaxgen.methods.base import Method
from jaxgen.metrics import image_quality as iq


def _levels(v) -> np.ndarray:
  """uint8 levels -> jaxgen's [-1, 1] floats."""
  return np.asarray(v, np.float32) / 127.5 - 1.0


def test_y_is_bt601_of_the_8_bit_image():
  rgb = _levels([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]])
  np.testing.assert_allclose(iq.to_y(rgb)[0], [235.0, 16.0, 16 + 65.481, 16 + 128.553, 16 + 24.966],
                             rtol=1e-6)
  # Quantised first: 100.4 levels count as 100 (the saved image), grey images are their own luma.
  np.testing.assert_allclose(iq.to_y(_levels([[[100.4], [7.6]]])), [[100.0, 8.0]])


def test_psnr_and_ssim_hand_values():
  a = np.full((1, 20, 20, 3), _levels(100), np.float32)
  b = np.full((1, 20, 20, 3), _levels(110), np.float32)
  ya, yb = iq.to_y(a), iq.to_y(b)
  dy = 219.0 * 10 / 255           # a grey step of 10 levels moves Y by 10 * 219 / 255
  np.testing.assert_allclose(iq.psnr(ya, yb), [20 * math.log10(255 / dy)], rtol=1e-5)
  # Constant images: no variance, no covariance: SSIM = (2 ma mb + C1) / (ma^2 + mb^2 + C1).
  ma, mb, c1 = 16 + 219 * 100 / 255, 16 + 219 * 110 / 255, (0.01 * 255) ** 2
  np.testing.assert_allclose(iq.ssim(ya, yb), [(2 * ma * mb + c1) / (ma ** 2 + mb ** 2 + c1)], rtol=1e-5)
  np.testing.assert_allclose(iq.ssim(ya, ya), [1.0], rtol=1e-6)
  assert np.isinf(np.asarray(iq.psnr(ya, ya))).all()
  # Differences only inside the border are cropped away.
  c = a.copy()
  c[:, :4] = _levels(0)
  assert np.isinf(np.asarray(iq.psnr(iq.crop_border(iq.to_y(c), 4), iq.crop_border(ya, 4)))).all()


def _ssim_numpy(x: np.ndarray, y: np.ndarray) -> float:
  """Wang et al.'s SSIM written out window by window (float64), Gaussian 11x11, sigma 1.5."""
  r = np.arange(11) - 5.0
  w = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5 ** 2))
  w /= w.sum()
  c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
  vals = []
  for i in range(x.shape[0] - 10):
    for j in range(x.shape[1] - 10):
      px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
      mx, my = (w * px).sum(), (w * py).sum()
      vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
      cxy = (w * (px - mx) * (py - my)).sum()
      vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
  return float(np.mean(vals))


def test_ssim_equals_a_window_by_window_reference_on_real_images(cifar_jpeg_numpy):
  hr = _levels(cifar_jpeg_numpy["test"][:3])
  noisy = np.clip(hr + np.random.RandomState(0).normal(0, 0.1, hr.shape), -1, 1).astype(np.float32)
  ya, yb = np.asarray(iq.to_y(hr), np.float64), np.asarray(iq.to_y(noisy), np.float64)
  want = [_ssim_numpy(ya[i], yb[i]) for i in range(3)]
  np.testing.assert_allclose(iq.ssim(ya, yb), want, rtol=1e-4)
  assert 0.2 < min(want) < max(want) < 0.95   # a discriminating case, not a saturated one
  mse = ((ya - yb) ** 2).mean(axis=(1, 2))
  np.testing.assert_allclose(iq.psnr(ya, yb), 10 * np.log10(255 ** 2 / mse), rtol=1e-5)


def test_bicubic_baseline_reproduces_linear_ramps_inside():
  # Cubic convolution (Keys a = -0.5) is exact on linear functions away from the borders.
  ramp = np.linspace(-0.8, 0.8, 8, dtype=np.float32)
  low = np.broadcast_to(ramp[None, None, :, None], (1, 8, 8, 1))
  up = np.asarray(iq.bicubic_upsample(low, 4))[0, 10, :, 0]
  # Output pixel k sits at input coordinate (k + 0.5) / 4 - 0.5 (half-pixel centres).
  x = (np.arange(32) + 0.5) / 4 - 0.5
  want = np.interp(x, np.arange(8), ramp)
  np.testing.assert_allclose(up[8:24], want[8:24], atol=1e-5)


class _Bicubic(Method):
  """A "super-resolution" method that returns the bicubic upsampling of its input."""
  cond_keys = ("low_res",)

  def sample(self, state, rng, num, cond=None):
    return iq.bicubic_upsample(cond["low_res"], self.config.data.degrade.factor)


def _config(name: str, num: int) -> ml_collections.ConfigDict:
  c = base_config()
  c.method = "bicubic"
  c.data.update(dict(source="arrays", name=name, image_size=32, channels=3, train_split="train",
                     eval_split="train"))
  c.data.degrade.update(dict(kind="bicubic", factor=4))
  c.eval.update(dict(batch_size=8, num_examples=num, evaluators=("psnr_ssim",)))
  return c


def test_evaluator_over_eval_rows_excludes_padding(cifar_jpeg_numpy):
  D.register_arrays("sr_eval_rows", cifar_jpeg_numpy["test"][:20])
  c = _config("sr_eval_rows", 20)   # 3 batches of 8: the last has 4 padding rows
  evaluator = evaluators.create("psnr_ssim", c)
  evaluator.validate()
  mesh = parallel.create_mesh(c.mesh)
  ctx = evaluators.Context(_Bicubic(c), c, None, mesh, jax.random.PRNGKey(0))
  got = evaluator(ctx)
  assert got["psnr_ssim_num_images"] == 20
  rows = [b for b in D.eval_iterator(c.data, global_batch_size=8, num_examples=20)]
  hr = np.concatenate([b["image"] for b in rows])[:20]
  low = np.concatenate([b["low_res"] for b in rows])[:20]
  np.testing.assert_allclose(hr[:4], _levels(cifar_jpeg_numpy["test"][:4]), atol=1e-6)
  y_hr = iq.crop_border(iq.to_y(hr), 4)
  y_up = iq.crop_border(iq.to_y(iq.bicubic_upsample(low, 4)), 4)
  want_psnr, want_ssim = float(np.mean(iq.psnr(y_up, y_hr))), float(np.mean(iq.ssim(y_up, y_hr)))
  for prefix in ("", "bicubic_"):   # the method *is* bicubic: both columns agree
    assert got[prefix + "psnr_y"] == pytest.approx(want_psnr, rel=1e-5)
    assert got[prefix + "ssim_y"] == pytest.approx(want_ssim, rel=1e-5)
  assert 15 < want_psnr < 35 and 0.3 < want_ssim < 0.95


def test_evaluator_config_errors():
  c = _config("unused", 4)
  c.data.degrade.kind = ""
  with pytest.raises(ConfigError, match="psnr_ssim.*degrade.kind=''.*set it to 'bicubic'"):
    evaluators.create("psnr_ssim", c).validate()
  c = _config("unused", 4)
  c.data.image_size = 16
  with pytest.raises(ConfigError, match="side minus the 4-pixel borders is 8.*11x11"):
    evaluators.create("psnr_ssim", c).validate()


def test_evaluator_reports_lpips_of_both_with_eval_lpips(cifar_jpeg_numpy):
  """config.eval.lpips: LPIPS (real VGG-16 and LPIPS v0.1 weights, fetched and cached) of the
  outputs and of bicubic; for a method that *is* bicubic the two agree."""
  D.register_arrays("sr_lpips_rows", cifar_jpeg_numpy["test"][:8])
  c = _config("sr_lpips_rows", 8)
  c.eval.lpips = True
  evaluator = evaluators.create("psnr_ssim", c)
  evaluator.validate()
  ctx = evaluators.Context(_Bicubic(c), c, None, parallel.create_mesh(c.mesh), jax.random.PRNGKey(0))
  got = evaluator(ctx)
  assert got["lpips"] == pytest.approx(got["bicubic_lpips"], rel=1e-5)
  assert 0.05 < got["lpips"] < 1.0   # x4 bicubic on 32x32 images is far from the originals
  c.data.channels = 1
  with pytest.raises(ConfigError, match="eval.lpips=True needs RGB"):
    evaluators.create("psnr_ssim", c).validate()
