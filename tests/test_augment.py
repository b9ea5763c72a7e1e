"""jaxgen.augment: SimCLR's single colour ops equal TensorFlow's tf.image ops on real CIFAR-10 images
(same parameters, ~1e-5), the pipeline is reproducible from its key, and the random resized crop's
area and aspect ratio stay in SimCLR's ranges."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import augment


@pytest.fixture(scope="module")
def images(cifar_jpeg_numpy):
  return cifar_jpeg_numpy["test"][:16].astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def tf():
  return pytest.importorskip("tensorflow")


def _per_image_tf(tf, fn, x, params):
  return np.stack([fn(tf.constant(x[i]), float(p)).numpy() for i, p in enumerate(params)])


@pytest.mark.parametrize("op,tf_name,lo,hi", [
    ("adjust_contrast", "adjust_contrast", 0.6, 1.4),
    ("adjust_saturation", "adjust_saturation", 0.6, 1.4),
    ("adjust_hue", "adjust_hue", -0.5, 0.5),
])
def test_colour_ops_equal_tf(images, tf, op, tf_name, lo, hi):
  params = np.linspace(lo, hi, len(images)).astype(np.float32)
  want = _per_image_tf(tf, getattr(tf.image, tf_name), images, params)
  got = np.asarray(jax.jit(getattr(augment, op))(images, params))
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_brightness_grayscale_equal_tf(images, tf):
  f = np.linspace(0.2, 1.8, len(images)).astype(np.float32)
  np.testing.assert_allclose(np.asarray(augment.adjust_brightness_mult(images, f)),
                             images * f[:, None, None, None], atol=1e-6)
  # simclrv1's additive brightness is tf.image.adjust_brightness; v2 (used here) multiplies.
  np.testing.assert_allclose(np.asarray(augment.rgb_to_grayscale(images)),
                             tf.image.rgb_to_grayscale(images).numpy(), atol=1e-5)


def test_hsv_round_trip_equal_tf(images, tf):
  np.testing.assert_allclose(np.asarray(augment.rgb_to_hsv(images)),
                             tf.image.rgb_to_hsv(images).numpy(), atol=1e-5)


def test_gaussian_blur_equals_simclr_formula(images, tf):
  """data_util.gaussian_blur: separable depthwise conv with zero 'SAME' padding."""
  sigma, k = 1.3, 5
  r = k // 2
  t = np.arange(-r, r + 1, dtype=np.float32)
  w = np.exp(-t ** 2 / (2 * sigma ** 2))
  w /= w.sum()
  x = tf.constant(images)
  c = images.shape[-1]
  y = tf.nn.depthwise_conv2d(x, np.tile(w.reshape(1, -1, 1, 1), (1, 1, c, 1)), [1] * 4, "SAME")
  y = tf.nn.depthwise_conv2d(y, np.tile(w.reshape(-1, 1, 1, 1), (1, 1, c, 1)), [1] * 4, "SAME")
  got = augment.gaussian_blur(images, np.full((len(images),), sigma, np.float32), k)
  np.testing.assert_allclose(np.asarray(got), y.numpy(), atol=1e-5)


def test_whole_box_crop_is_identity(images):
  b, h, w, _ = images.shape
  boxes = np.tile(np.array([[0, 0, h, w]], np.int32), (b, 1))
  for method in ("cubic", "linear"):
    np.testing.assert_allclose(np.asarray(augment.crop_and_resize(images, boxes, method)), images,
                               atol=1e-5)


def test_crop_area_and_aspect_in_range():
  boxes = np.asarray(augment.crop_boxes(jax.random.key(0), 4000, 32, 32))
  top, left, h, w = boxes.T
  assert (top >= 0).all() and (left >= 0).all() and (top + h <= 32).all() and (left + w <= 32).all()
  area = h * w / 1024.0
  # Rounding of sides moves area / aspect slightly past the continuous ranges.
  assert area.min() >= 0.06 and area.max() <= 1.0
  aspect = w / h
  assert aspect.min() >= 0.75 * 0.8 and aspect.max() <= 4 / 3 / 0.8
  assert 0.45 < np.mean(area) < 0.65                  # E[U(0.08, 1)] = 0.54 (few fallbacks)
  assert np.mean(np.abs(np.log(aspect)) < np.log(4 / 3) + 0.1) > 0.95


def test_views_reproducible_and_distinct(images):
  x = jnp.asarray(images) * 2 - 1
  f = jax.jit(lambda k, x: augment.simclr_view(k, x, strength=0.5, blur=True))
  a, a2, b = f(jax.random.key(1), x), f(jax.random.key(1), x), f(jax.random.key(2), x)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(a2))
  assert float(jnp.mean(jnp.abs(a - b))) > 0.05
  assert float(jnp.min(a)) >= -1.0 and float(jnp.max(a)) <= 1.0
  # Per image: different images in one batch get different crops (not one draw for the batch).
  boxes = np.asarray(augment.crop_boxes(jax.random.key(3), 16, 32, 32))
  assert len({tuple(r) for r in boxes}) > 8
