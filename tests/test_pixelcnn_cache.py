"""The cached PixelCNN / Gated PixelCNN sampler (jaxgen.models.pixelcnn_cache): the same images as
the naive sampler for the same rng, and at every position the logits of the full network on the
partially sampled canvas."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.configs import load_config_file
from jaxgen.methods.autoregressive import Autoregressive
from jaxgen.models import pixelcnn_cache
from jaxgen.state import TrainState
from test_train import REPO

MNIST = str(REPO / "configs" / "autoregressive" / "mnist.py")
CIFAR = str(REPO / "configs" / "autoregressive" / "cifar10.py")


def _random_state(m: Autoregressive, seed: int = 1) -> TrainState:
  """A state with random params of the model's tree (kernels N(0, (1.5 / sqrt(fan_in))^2), biases
  N(0, 0.3^2)), so that every conditional is informative. Shapes from `eval_shape` and values from
  numpy: a jitted init of these models compiles for ~9 s on 2 cores."""
  h, w, c = m.shape
  args = (jnp.zeros((1, h, w, c)),) + ((jnp.zeros((1,), jnp.int32),) if m.conditional else ())
  return TrainState.create(params=_random_params(m.model, args, seed), opt_state=None,
                           rng=jax.random.PRNGKey(0))


def _random_params(model, args, seed: int):
  """Random params of model's tree for inputs `args` (see _random_state)."""
  shapes = jax.eval_shape(lambda r: model.init(r, *args, train=False), jax.random.PRNGKey(0))
  rng = np.random.default_rng(seed)
  scale = lambda s: 1.5 / np.sqrt(np.prod(s[:-1])) if len(s) > 1 else 0.3  # noqa: E731
  return jax.tree.map(lambda a: jnp.asarray(rng.normal(0, scale(a.shape), a.shape), jnp.float32),
                      shapes["params"])


def _method(path, arch, **model):
  c = load_config_file(f"{path}:tiny,arch={arch}")
  c.data.image_size = 8
  c.model.update(dict(hidden=8, num_blocks=3, num_layers=3), **model)
  return Autoregressive(c)


CASES = [(MNIST, "pixelcnn", {}), (CIFAR, "pixelcnn", {}), (MNIST, "gated_pixelcnn", {}),
         (CIFAR, "gated_pixelcnn", {"conditional": True})]


@pytest.mark.parametrize("path,arch,model", CASES)
def test_cached_sampler_draws_the_naive_samplers_images(path, arch, model):
  """For the same rng the two samplers give identical images (C=1 Bernoulli, C=3 256-way)."""
  m = _method(path, arch, **model)
  state = _random_state(m)
  out = {}
  for cached in (False, True):
    m.config.sample.cached = cached
    out[cached] = np.asarray(jax.jit(lambda st, r: m.sample(st, r, 16))(state, jax.random.PRNGKey(5)))  # noqa: B023
  mismatch = np.mean(out[True] != out[False])
  print(f"{arch} C={m.channels}: fraction of values that differ: {mismatch}, "
        f"{len(np.unique(out[True]))} distinct values, mean {out[True].mean():.2f}")
  assert len(np.unique(out[True])) > 1
  np.testing.assert_array_equal(out[True], out[False])


@pytest.mark.parametrize("path,arch,model", CASES)
def test_cached_logits_equal_the_full_network_on_the_partial_canvas(path, arch, model):
  """The logits each position is drawn from equal the full network's at that position, run on the
  canvas where that position and all later ones are still zero (every position, one image)."""
  m = _method(path, arch, **model)
  state = _random_state(m)
  h, w, c = m.shape
  labels = jnp.array([3, 7], jnp.int32) if m.conditional else None
  images, logits = jax.jit(lambda p, r: pixelcnn_cache.sample_with_logits(
      m.model, p, r, 2, (h, w), labels))(state.params, jax.random.PRNGKey(4))
  x = np.asarray(images[0])
  positions = [(i, j, ch) for i in range(h) for j in range(w) for ch in range(c)]
  canvases = np.zeros((len(positions), h, w, c), np.float32)
  flat = x.reshape(-1)
  for n in range(len(positions)):
    canvases[n].reshape(-1)[:n] = flat[:n]     # raster order = C-order of [H, W, C]
  lab = None if labels is None else jnp.full((len(positions),), labels[0])
  full = np.asarray(jax.jit(lambda cv: m._apply(state.params, cv, lab, train=False))(canvases))  # pylint: disable=protected-access
  logits = np.asarray(logits[0])
  for n, (i, j, ch) in enumerate(positions):
    want = full[n, i, j, 0] if m.likelihood == "bernoulli" else full[n, i, j, ch]
    got = logits[i, j, 0] if m.likelihood == "bernoulli" else logits[i, j, ch]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"position {(i, j, ch)}")
  assert images.shape == (2, h, w, c) and np.all(np.abs(np.asarray(images)) <= 1)


def _pixelcnnpp(channels: int, num_classes: int, weight_norm: bool, side: int = 8, seed: int = 0):
  """A small PixelCNN++ (one block per resolution, 8 filters, 2 mixture components) and random
  params of its tree (as _random_state)."""
  from jaxgen.models.pixelcnn import PixelCNNpp
  model = PixelCNNpp(channels=channels, nr_resnet=1, nr_filters=8, nr_logistic_mix=2, dropout=0.0,
                     num_classes=num_classes, weight_norm=weight_norm)
  args = (jnp.zeros((1, side, side, channels)),) + ((jnp.zeros((1,), jnp.int32),) if num_classes else ())
  return model, _random_params(model, args, seed)


def test_pixelcnnpp_cached_sampler_draws_the_naive_samplers_images():
  """PixelCNN++ (the CIFAR config: 3 channels, weight normalisation, 8x8): the cached sampler, which
  runs the u stream once per row and the ul stream once per pixel at each resolution, gives the
  naive sampler's images for the same rng."""
  c = load_config_file(f"{CIFAR}:tiny,arch=pixelcnnpp")
  c.data.image_size = 8
  m = Autoregressive(c)
  assert m.model.weight_norm
  state = _random_state(m)
  out = {}
  for cached in (False, True):
    m.config.sample.cached = cached
    out[cached] = np.asarray(jax.jit(lambda st, r: m.sample(st, r, 4))(state, jax.random.PRNGKey(2)))  # noqa: B023
  print(f"pixelcnnpp: {len(np.unique(out[True]))} distinct values, mean {out[True].mean():.2f}")
  assert len(np.unique(out[True])) > 10
  np.testing.assert_array_equal(out[True], out[False])


@pytest.mark.parametrize("channels,num_classes,weight_norm", [(3, 10, False), (1, 0, True)])
def test_pixelcnnpp_cached_mixture_params_equal_the_full_network_on_the_samples(
    channels, num_classes, weight_norm):
  """Each pixel's mixture parameters in the cached sampler equal the full network's at that pixel
  on the finished images (PixelCNN++'s output at (i, j) sees only earlier pixels, all final), with
  labels reaching every block, and for a 16x16 image (four rows per quarter-resolution row)."""
  model, params = _pixelcnnpp(channels, num_classes, weight_norm, side=16)
  labels = jnp.array([1, 5], jnp.int32) if num_classes else None
  images, mix = jax.jit(lambda p, r: pixelcnn_cache.sample_with_logits(
      model, p, r, 2, (16, 16), labels))(params, jax.random.PRNGKey(3))
  full = model.apply({"params": params}, images, *(() if labels is None else (labels,)), train=False)
  full, mix = np.asarray(full), np.asarray(mix)
  assert np.abs(full).max() > 0.1 and full.std(axis=(1, 2)).min() > 1e-3   # informative, varies by pixel
  np.testing.assert_allclose(mix, full, rtol=1e-5, atol=1e-5 * np.abs(full).max())
  x = np.asarray(images)
  assert x.shape == (2, 16, 16, channels) and np.all(np.abs(x) <= 1)
  np.testing.assert_allclose(np.round((x + 1) * 127.5), (x + 1) * 127.5, atol=1e-3)  # 8-bit grid


def test_unsupported_models_are_refused_with_the_fix():
  from jaxgen.models.pixelrnn import PixelRNN
  with pytest.raises(ValueError, match="config.sample.cached=False"):
    pixelcnn_cache.sample(PixelRNN(channels=1), {}, jax.random.PRNGKey(0), 1, (4, 4))
