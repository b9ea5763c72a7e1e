"""VAE family: likelihood and KL maths against closed forms / references, IWAE bound behaviour,
learning on real MNIST, sharding, conditional VAE, interpolation, config validation."""
import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen import distributions
from jaxgen.methods import vae as vae_method
from jaxgen.methods.base import ConfigError

CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs" / "vae"
# Learning check: steps and batch of the run on real MNIST, and the bound its negative ELBO must beat.
# Measured (small model below, seed 0): train neg-ELBO 542.7 nats at step 0, mean over the last 50 of
# 300 steps 134.2; on the first 128 test images neg-ELBO 128.1, k=100 NLL 120.2 nats.
LEARN_STEPS, LEARN_BATCH, NEG_ELBO_BOUND = 300, 64, 145.0


def _config(name: str = "mnist.py", arg=None):
  spec = importlib.util.spec_from_file_location(f"vae_config_{name}", CONFIGS / name)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def _images(x_uint8: np.ndarray) -> jax.Array:
  return jnp.asarray(x_uint8.astype(np.float32) / 127.5 - 1.0)


def test_kl_closed_form_matches_monte_carlo():
  rng = np.random.RandomState(0)
  mean = jnp.asarray(rng.normal(size=(4,)) * 1.5, jnp.float32)
  logvar = jnp.asarray(rng.normal(size=(4,)), jnp.float32)
  n = 400_000
  z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(jax.random.PRNGKey(0), (n, 4))
  # log q - log p with scipy's (independent) normal density.
  zs, m = np.asarray(z, np.float64), np.asarray(mean, np.float64)
  s = np.exp(0.5 * np.asarray(logvar, np.float64))
  diff = (scipy.stats.norm.logpdf(zs, m, s) - scipy.stats.norm.logpdf(zs)).sum(-1)
  mc, stderr = diff.mean(), diff.std() / math.sqrt(n)
  closed = float(distributions.standard_normal_kl(mean, logvar))
  assert abs(closed - mc) < 4 * stderr, (closed, mc, stderr)
  # And the log-density helper used by the IWAE weights equals scipy's.
  np.testing.assert_allclose(np.asarray(distributions.gaussian_log_prob(z[:100], mean, logvar)),
                             scipy.stats.norm.logpdf(zs[:100], m, s).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("mean,log_scale", [(0.1, -2.0), (-1.3, -1.0), (0.9, -5.0), (0.0, 1.5),
                                            (0.999, -6.5), (2.5, -4.0)])
def test_discretized_gaussian_is_normalised_and_exact(mean, log_scale):
  x = jnp.arange(256, dtype=jnp.float32) / 127.5 - 1.0
  logp = distributions.discretized_gaussian_log_prob(x, jnp.float32(mean), jnp.float32(log_scale))
  assert np.all(np.isfinite(np.asarray(logp)))
  np.testing.assert_allclose(float(jnp.sum(jnp.exp(logp))), 1.0, atol=1e-5)
  # Reference in float64: Gaussian mass of each bin, edge bins open to -inf / +inf.
  edges = np.concatenate([[-np.inf], (np.arange(255) + 0.5) / 127.5 - 1.0, [np.inf]])
  cdf = scipy.stats.norm.cdf(edges, loc=mean, scale=math.exp(log_scale))
  probs = np.diff(cdf)
  big = probs > 1e-6
  np.testing.assert_allclose(np.exp(np.asarray(logp, np.float64))[big], probs[big], rtol=1e-3, atol=1e-7)


def test_discretized_gaussian_gradient_is_finite_far_in_the_tails():
  grad = jax.grad(lambda m: jnp.sum(distributions.discretized_gaussian_log_prob(
      jnp.array([-1.0, 0.0, 1.0]), m, jnp.float32(-7.0))))(jnp.float32(0.5))
  assert np.isfinite(float(grad)) and float(grad) != 0.0


def test_bernoulli_log_prob_hand_value():
  logits = jnp.array([0.0, 2.0, -1.0, 3.0])
  x = jnp.array([1.0, 0.0, 1.0, 1.0])
  sig = lambda a: 1 / (1 + math.exp(-a))
  expected = math.log(0.5) + math.log(1 - sig(2.0)) + math.log(sig(-1.0)) + math.log(sig(3.0))
  np.testing.assert_allclose(float(jnp.sum(vae_method.bernoulli_log_prob(x, logits))), expected, rtol=1e-6)


def test_eval_binarization_is_per_example_and_unbiased(mnist_numpy):
  images = _images(mnist_numpy["test"][0][:64])
  a = vae_method.binarize_per_example(images)
  b = vae_method.binarize_per_example(images[::-1])[::-1]  # other order, other batch positions
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert set(np.unique(np.asarray(a))) <= {0.0, 1.0}
  assert not np.array_equal(np.asarray(a[0]), np.asarray(a[1]))
  # P(1) = (x + 1) / 2: the overall fraction of ones matches the mean intensity (std error ~0.001).
  np.testing.assert_allclose(float(a.mean()), float(((images + 1) / 2).mean()), atol=0.005)


@pytest.fixture(scope="module")
def trained(mnist_numpy):
  """A small VAE trained LEARN_STEPS steps on real MNIST with the jitted train_step."""
  cfg = _config()
  cfg.model.channels, cfg.model.hidden, cfg.model.latent_dim = (16, 32), 128, 16
  cfg.optim.schedule = "constant"
  cfg.train.num_steps = LEARN_STEPS
  method = vae_method.VAE(cfg)
  method.validate()
  state = method.init(jax.random.PRNGKey(0), None)
  step = jax.jit(method.train_step)
  x_train = mnist_numpy["train"][0]
  rs = np.random.RandomState(0)
  losses = []
  for i in range(LEARN_STEPS):
    batch = {"image": _images(x_train[rs.randint(0, len(x_train), LEARN_BATCH)])}
    state, metrics = step(state, batch, jax.random.fold_in(jax.random.PRNGKey(1), i))
    losses.append(float(metrics["loss"]))
  return method, state, np.array(losses)


def test_learning_on_mnist(trained):
  _, state, losses = trained
  assert state.ema_params is None  # train.ema_decay = 0
  assert losses[0] > 400, losses[0]  # untrained: about 543 nats
  assert losses[-50:].mean() < NEG_ELBO_BOUND, losses[-50:].mean()


def test_eval_nll_tighter_than_neg_elbo_and_repeatable(trained, mnist_numpy):
  method, state, _ = trained
  method.config.eval.iwae_k, method.config.eval.iwae_chunk = 100, 25
  batch = {"image": _images(mnist_numpy["test"][0][:128])}
  ev = jax.jit(method.eval_step)
  out = ev(state, batch, jax.random.PRNGKey(7))
  nll, neg_elbo = np.asarray(out["nll"]), np.asarray(out["neg_elbo"])
  assert nll.shape == neg_elbo.shape == (128,) and out["bits_per_dim"].dtype == jnp.float32
  assert neg_elbo.mean() < NEG_ELBO_BOUND, neg_elbo.mean()
  assert 0.5 < (neg_elbo - nll).mean() < 30, (neg_elbo.mean(), nll.mean())
  assert np.mean(nll <= neg_elbo) > 0.95
  np.testing.assert_allclose(np.asarray(out["bits_per_dim"]), nll / (784 * math.log(2)), rtol=1e-6)
  # Same rng, batch now split over 2 devices: the same numbers (binarization is fixed per example,
  # z comes from the rng), so repeated evals agree whatever the mesh.
  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  again = ev(state, jax.device_put(batch, NamedSharding(mesh, P("data"))), jax.random.PRNGKey(7))
  np.testing.assert_allclose(np.asarray(again["nll"]), nll, rtol=1e-5)


def test_iwae_bounds_match_brute_force(trained, mnist_numpy):
  """The chunked scan equals logmeanexp / mean over the same k weights computed directly (float64)."""
  method, state, _ = trained
  k, chunk = 20, 5
  target, x_in = method.targets(_images(mnist_numpy["test"][0][:8]), None)
  rng = jax.random.PRNGKey(5)
  log_px_k, elbo = jax.jit(method.iwae_bounds, static_argnums=(5, 6))(
      state.params, target, x_in, None, rng, k, chunk)
  params = {"params": state.params}
  mean, logvar = method.model.apply(params, x_in, method="encode")
  m, s = np.asarray(mean, np.float64), np.exp(0.5 * np.asarray(logvar, np.float64))
  t = np.asarray(target, np.float64).reshape(8, -1)
  log_w, log_lik = [], []
  for key in jax.random.split(rng, k // chunk):  # the same noise the scan draws
    eps = np.asarray(jax.random.normal(key, (8, chunk * 16)), np.float64).reshape(8, chunk, 16)
    z = m[:, None] + s[:, None] * eps
    logits = np.asarray(method.model.apply(params, jnp.asarray(z.reshape(-1, 16), jnp.float32),
                                           method="decode"), np.float64).reshape(8, chunk, -1)
    ll = np.sum(t[:, None] * -np.logaddexp(0, -logits) + (1 - t[:, None]) * -np.logaddexp(0, logits),
                axis=-1)
    log_lik.append(ll)
    log_w.append(ll + scipy.stats.norm.logpdf(z).sum(-1)
                 - scipy.stats.norm.logpdf(z, m[:, None], s[:, None]).sum(-1))
  log_w, log_lik = np.concatenate(log_w, axis=1), np.concatenate(log_lik, axis=1)
  np.testing.assert_allclose(np.asarray(log_px_k), scipy.special.logsumexp(log_w, axis=1) - math.log(k),
                             rtol=1e-4)
  kl = 0.5 * np.sum(m ** 2 + s ** 2 - 1 - 2 * np.log(s), axis=-1)
  np.testing.assert_allclose(np.asarray(elbo), log_lik.mean(1) - kl, rtol=1e-4)


def test_iwae_bound_tightens_with_k(trained, mnist_numpy):
  method, state, _ = trained
  target, x_in = method.targets(_images(mnist_numpy["test"][0][:256]), None)
  bounds = jax.jit(method.iwae_bounds, static_argnums=(5, 6))
  est = {k: bounds(state.params, target, x_in, None, jax.random.PRNGKey(k), k, min(k, 25))
         for k in (1, 10, 100)}
  log_p = {k: np.asarray(v[0]) for k, v in est.items()}
  # k=1 is an unbiased estimate of the ELBO: compare with the (low-variance) 100-sample ELBO.
  diff = log_p[1] - np.asarray(est[100][1])
  assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff)), (diff.mean(), diff.std())
  assert log_p[1].mean() < log_p[10].mean() < log_p[100].mean(), [v.mean() for v in log_p.values()]


def test_interpolation_endpoints_are_reconstructions(trained, mnist_numpy):
  method, state, _ = trained
  x = _images(mnist_numpy["test"][0][:2])
  path = method.interpolate(state, x[0], x[1], 5)
  assert path.shape == (5, 28, 28, 1)
  recon = 2 * jax.nn.sigmoid(method.model.apply({"params": state.params}, x)) - 1
  np.testing.assert_allclose(np.asarray(path[0]), np.asarray(recon[0]), atol=1e-5)
  np.testing.assert_allclose(np.asarray(path[-1]), np.asarray(recon[1]), atol=1e-5)
  assert np.abs(np.asarray(recon[0] - recon[1])).mean() > 0.05  # the endpoints are different images
  # The middle decodes the midpoint of the two posterior means.
  mean, _ = method.model.apply({"params": state.params}, x, method="encode")
  mid = method.model.apply({"params": state.params}, mean.mean(0, keepdims=True), method="decode")
  np.testing.assert_allclose(np.asarray(path[2]), np.asarray(2 * jax.nn.sigmoid(mid[0]) - 1), atol=1e-5)


def test_train_step_sharded_equals_unsharded(mnist_numpy):
  method = vae_method.VAE(_config(arg="tiny"))
  batch = {"image": _images(mnist_numpy["train"][0][:8])}
  state = method.init(jax.random.PRNGKey(0), batch)
  step = jax.jit(method.train_step)
  rng = jax.random.PRNGKey(3)
  ref_state, ref = step(state, batch, rng)
  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  new_state, got = step(jax.device_put(state, NamedSharding(mesh, P())), sharded, rng)
  assert len(sharded["image"].sharding.device_set) == 2
  np.testing.assert_allclose(float(got["loss"]), float(ref["loss"]), rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6),
               new_state.params, ref_state.params)


def test_discretized_gaussian_training_and_ema(mnist_numpy):
  cfg = _config(arg="tiny")
  cfg.model.likelihood = "discretized_gaussian"
  cfg.train.ema_decay = 0.9
  cfg.optim.lr = 3e-3
  method = vae_method.VAE(cfg)
  batch = {"image": _images(mnist_numpy["train"][0][:16])}
  state = method.init(jax.random.PRNGKey(0), batch)
  step = jax.jit(method.train_step)
  first_state, first = step(state, batch, jax.random.PRNGKey(0))
  # EMA: ema <- 0.9 ema + 0.1 params, starting from the initial params.
  jax.tree.map(lambda e, p0, p1: np.testing.assert_allclose(e, 0.9 * p0 + 0.1 * p1, rtol=1e-5, atol=1e-7),
               first_state.ema_params, state.params, first_state.params)
  new_state = first_state
  for i in range(1, 30):
    new_state, metrics = step(new_state, batch, jax.random.PRNGKey(i))
  # Fitting 16 images for 30 steps must lower the 8-bit neg-ELBO clearly (measured: 2014 -> 1424).
  assert np.isfinite(float(first["loss"])) and float(metrics["loss"]) < 0.8 * float(first["loss"])
  samples = method.sample(new_state, jax.random.PRNGKey(4), 6)
  assert samples.shape == (6, 28, 28, 1)
  assert float(samples.min()) >= -1.0 and float(samples.max()) <= 1.0


def test_conditional_needs_labels():
  cfg = _config("cvae_mnist.py", "tiny")
  vae_method.VAE(cfg).validate()
  cfg.data.num_classes = 0
  with pytest.raises(ConfigError, match="data.num_classes"):
    vae_method.VAE(cfg).validate()


def test_conditional_sampling(mnist_numpy):
  cfg = _config("cvae_mnist.py", "tiny")
  method = vae_method.VAE(cfg)
  x, y = mnist_numpy["train"]
  batch = {"image": _images(x[:16]), "label": jnp.asarray(y[:16])}
  state = method.init(jax.random.PRNGKey(0), batch)
  state, metrics = jax.jit(method.train_step)(state, batch, jax.random.PRNGKey(1))
  assert np.isfinite(float(metrics["loss"]))
  rng = jax.random.PRNGKey(2)
  default = method.sample(state, rng, 12)
  assert default.shape == (12, 28, 28, 1) and default.dtype == jnp.float32
  assert float(default.min()) >= -1.0 and float(default.max()) <= 1.0
  cycled = method.sample(state, rng, 12, {"label": jnp.arange(12, dtype=jnp.int32) % 10})
  np.testing.assert_array_equal(np.asarray(default), np.asarray(cycled))
  zeros = method.sample(state, rng, 12, {"label": jnp.zeros((12,), jnp.int32)})
  np.testing.assert_array_equal(np.asarray(zeros[0]), np.asarray(default[0]))  # both label 0
  assert np.abs(np.asarray(zeros[1:10] - default[1:10])).max() > 1e-4  # other labels, other images
  out = jax.jit(method.eval_step)(state, batch, rng)
  assert out["nll"].shape == (16,) and np.all(np.isfinite(np.asarray(out["nll"])))
  # Conditional interpolation: endpoints are the reconstructions under each image's own label.
  path = method.interpolate(state, batch["image"][0], batch["image"][1], 4, batch["label"][:2])
  recon = 2 * jax.nn.sigmoid(method.model.apply(
      {"params": state.params}, batch["image"][:2], jax.nn.one_hot(batch["label"][:2], 10))) - 1
  np.testing.assert_allclose(np.asarray(path)[[0, -1]], np.asarray(recon), atol=1e-5)


def test_validate_rejects_bad_configs():
  cfg = _config()
  vae_method.VAE(cfg).validate()
  cfg.data.image_size = 30
  with pytest.raises(ConfigError, match=r"image_size=30.*multiple of 4"):
    vae_method.VAE(cfg).validate()
  cfg = _config()
  cfg.model.likelihood = "gaussian"
  with pytest.raises(ConfigError, match="likelihood='gaussian'"):
    vae_method.VAE(cfg).validate()
  cfg = _config()
  cfg.eval.iwae_k = 5001
  with pytest.raises(ConfigError, match="iwae_k=5001"):
    vae_method.VAE(cfg).validate()
