"""DCGAN and the GAN method: losses against closed forms, the two-player step's invariants, the
paper's architecture, sharding, EMA, configs, and a learning check on real MNIST."""
import importlib.util
import math
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxgen.configs import base_config
from jaxgen.methods.base import ConfigError
from jaxgen.gan.losses import LOSSES
from jaxgen.methods.gan import GAN
from jaxgen.models import dcgan
from jaxgen.state import TrainState, jit_once

REPO = pathlib.Path(__file__).resolve().parents[1]
EMA_DECAY = 0.75


def _config(image_size=16, channels=1, gf=8, df=8, z_dim=10, loss="non_saturating", ema=0.0):
  c = base_config()
  c.method = "gan"
  c.data.image_size = image_size
  c.data.channels = channels
  c.model = ml_collections.ConfigDict(dict(arch="dcgan", z_dim=z_dim, gen_features=gf,
                                           disc_features=df, dtype="float32"))
  c.gan = ml_collections.ConfigDict(dict(loss=loss))
  adam = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999)
  c.optim = ml_collections.ConfigDict(dict(generator=dict(adam), discriminator=dict(adam)))
  c.train.ema_decay = ema
  return c


def _batch(n=8, size=16, channels=1, seed=0):
  x = np.random.RandomState(seed).uniform(-1, 1, (n, size, size, channels)).astype(np.float32)
  return {"image": jnp.asarray(x)}


def _init(method: GAN, batch) -> TrainState:
  # Jitted: eager init dispatches (and compiles) every primitive on its own, which is much slower.
  return jit_once(method.init)(jax.random.PRNGKey(0), batch)


@pytest.fixture(scope="module")
def small():
  """(method, initial state, jitted train_step) of a 16x16 grey DCGAN with EMA, shared so that the
  step compiles once."""
  method = GAN(_config(ema=EMA_DECAY))
  return method, _init(method, _batch()), jax.jit(method.train_step)


def _softplus(x: float) -> float:
  return math.log1p(math.exp(x))


def _tree_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _tree_all_differ(a, b) -> bool:
  """Every leaf changed (the step reached every parameter tensor)."""
  return all(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ---------------------------------------------------------------------------------------- losses

def test_non_saturating_loss_known_values():
  loss = LOSSES["non_saturating"]
  real, fake = jnp.array([0.0, 2.0]), jnp.array([-1.0, 3.0])
  want_d = (_softplus(0.0) + _softplus(-2.0)) / 2 + (_softplus(-1.0) + _softplus(3.0)) / 2
  np.testing.assert_allclose(loss.d_loss(real, fake), want_d, rtol=1e-6)
  np.testing.assert_allclose(loss.g_loss(fake), (_softplus(1.0) + _softplus(-3.0)) / 2, rtol=1e-6)
  # Large |logits|: -log(sigmoid(x)) in float32 is inf for x = -1000; softplus gives the exact value.
  np.testing.assert_allclose(loss.d_loss(jnp.array([-1000.0]), jnp.array([1000.0])), 2000.0)
  np.testing.assert_allclose(loss.d_loss(jnp.array([1000.0]), jnp.array([-1000.0])), 0.0)
  np.testing.assert_allclose(loss.g_loss(jnp.array([-1000.0, -200.0])), 600.0)
  np.testing.assert_allclose(loss.g_loss(jnp.array([80.0])), math.exp(-80.0), rtol=1e-5)
  assert loss.threshold == 0.0


def test_lsgan_and_hinge_losses_known_values():
  ls = LOSSES["lsgan"]
  # 0.5 * mean((0.5-1)^2, (2-1)^2) + 0.5 * mean(0^2, (-1)^2) = 0.5 * 0.625 + 0.5 * 0.5
  np.testing.assert_allclose(ls.d_loss(jnp.array([0.5, 2.0]), jnp.array([0.0, -1.0])), 0.5625)
  np.testing.assert_allclose(ls.g_loss(jnp.array([0.0, -1.0])), 1.25)  # 0.5 * mean(1, 4)
  assert ls.threshold == 0.5
  hinge = LOSSES["hinge"]
  # mean(relu(1-0.5), relu(1-2)) + mean(relu(1-2), relu(1+0.5)) = 0.25 + 0.75
  np.testing.assert_allclose(hinge.d_loss(jnp.array([0.5, 2.0]), jnp.array([-2.0, 0.5])), 1.0)
  np.testing.assert_allclose(hinge.g_loss(jnp.array([-2.0, 0.5])), 0.75)
  np.testing.assert_allclose(hinge.d_loss(jnp.array([1e4]), jnp.array([-1e4])), 0.0)


# ---------------------------------------------------------------------------------- architecture

def test_paper_architecture_64x64():
  """The paper's LSUN model: z 100 -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3."""
  g = dcgan.Generator(image_size=64, channels=3, features=128)
  d = dcgan.Discriminator(image_size=64, features=128)
  z, x = jnp.zeros((2, 100)), jnp.zeros((2, 64, 64, 3))
  g_vars = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), z, train=False))
  _, inter = jax.eval_shape(lambda v: g.apply(v, z, train=False, capture_intermediates=True,
                                             mutable=["intermediates"]), g_vars)
  shapes = {k: v["__call__"][0].shape for k, v in inter["intermediates"].items() if k != "__call__"}
  assert shapes == {"project": (2, 16384), "project_bn": (2, 4, 4, 1024),
                    "up1": (2, 8, 8, 512), "up1_bn": (2, 8, 8, 512),
                    "up2": (2, 16, 16, 256), "up2_bn": (2, 16, 16, 256),
                    "up3": (2, 32, 32, 128), "up3_bn": (2, 32, 32, 128),
                    "to_image": (2, 64, 64, 3)}
  # No BatchNorm on G's output layer, so only it has a bias.
  assert set(g_vars["params"]["to_image"]) == {"kernel", "bias"}
  assert set(g_vars["params"]["up3"]) == {"kernel"}

  d_vars = jax.eval_shape(lambda: d.init(jax.random.PRNGKey(0), x, train=False))
  kernels = {k: v["kernel"].shape for k, v in d_vars["params"].items() if "kernel" in v}
  assert kernels == {"down0": (4, 4, 3, 128), "down1": (4, 4, 128, 256),
                     "down2": (4, 4, 256, 512), "down3": (4, 4, 512, 1024), "logit": (16384, 1)}
  # No BatchNorm on D's input layer.
  assert set(d_vars["batch_stats"]) == {"down1_bn", "down2_bn", "down3_bn"}
  assert jax.eval_shape(lambda v: d.apply(v, x, train=False), d_vars).shape == (2,)


def test_parameter_counts_by_hand(small):
  # G (16x16x1, features 8, z 10): project 10*4*4*16 = 2560 (no bias) + BN 2*16
  #   + up1 4*4*16*8 = 2048 (no bias) + BN 2*8 + to_image 4*4*8*1 + 1 = 129  -> 4785.
  # D (features 8): down0 4*4*1*8 + 8 = 136 + down1 4*4*8*16 = 2048 + BN 2*16
  #   + logit 4*4*16 + 1 = 257  -> 2473.
  state = small[1]
  count = lambda t: sum(x.size for x in jax.tree.leaves(t))  # noqa: E731
  assert count(state.params["generator"]) == 4785
  assert count(state.params["discriminator"]) == 2473
  assert count(state.model_state["generator"]) == 2 * 16 + 2 * 8
  assert count(state.model_state["discriminator"]) == 2 * 16


def test_init_is_n_0_002():
  g = dcgan.Generator(image_size=32, channels=3, features=64)
  params = jax.jit(g.init, static_argnames="train")(jax.random.PRNGKey(0), jnp.zeros((1, 100)),
                                                     train=False)["params"]
  for name in ("project", "up1", "up2"):
    k = np.asarray(params[name]["kernel"])
    assert abs(k.mean()) < 1e-3 and abs(k.std() - 0.02) < 5e-4, (name, k.mean(), k.std())
  scale = np.asarray(params["project_bn"]["scale"])
  assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03


# ------------------------------------------------------------------------------------ train step

def test_train_step_updates_both_players_and_is_deterministic(small):
  _, state, step = small
  new, metrics = step(state, _batch(), jax.random.PRNGKey(1))
  assert int(new.step) == 1
  assert _tree_all_differ(state.params["generator"], new.params["generator"])
  assert _tree_all_differ(state.params["discriminator"], new.params["discriminator"])
  assert _tree_all_differ(state.model_state["discriminator"], new.model_state["discriminator"])
  assert _tree_all_differ(state.model_state["generator"], new.model_state["generator"])
  assert set(metrics) == {"loss", "d_loss", "g_loss", "d_real_acc", "d_fake_acc",
                          "d_real_logit", "d_fake_logit"}
  np.testing.assert_allclose(metrics["loss"], metrics["d_loss"] + metrics["g_loss"], rtol=1e-6)
  for v in metrics.values():
    assert v.dtype == jnp.float32 and v.shape == () and np.isfinite(v)
  # At init D is near chance: logits ~ 0, so the BCE is ~ 2 log 2 and G's loss ~ log 2.
  np.testing.assert_allclose(metrics["d_loss"], 2 * math.log(2), atol=0.1)
  np.testing.assert_allclose(metrics["g_loss"], math.log(2), atol=0.1)

  again, metrics2 = step(state, _batch(), jax.random.PRNGKey(1))
  assert _tree_equal(new, again) and _tree_equal(metrics, metrics2)
  other, _ = step(state, _batch(), jax.random.PRNGKey(2))
  assert not _tree_equal(new.params["generator"], other.params["generator"])


def test_each_player_step_leaves_the_other_alone(small):
  method, state, _ = small
  real = _batch()["image"]

  after_d, _ = jax.jit(method.discriminator_step)(state, real, jax.random.PRNGKey(1))
  assert _tree_equal(after_d.params["generator"], state.params["generator"])
  assert _tree_equal(after_d.opt_state["generator"], state.opt_state["generator"])
  assert _tree_all_differ(after_d.params["discriminator"], state.params["discriminator"])

  after_g, _ = jax.jit(method.generator_step, static_argnums=1)(after_d, 8, jax.random.PRNGKey(2))
  assert _tree_equal(after_g.params["discriminator"], after_d.params["discriminator"])
  assert _tree_equal(after_g.opt_state["discriminator"], after_d.opt_state["discriminator"])
  assert _tree_equal(after_g.model_state["discriminator"], after_d.model_state["discriminator"])
  assert _tree_all_differ(after_g.params["generator"], after_d.params["generator"])


@pytest.mark.parametrize("loss", ["non_saturating", "lsgan", "hinge"])
def test_config_selects_the_loss(loss):
  assert GAN(_config(loss=loss)).loss is LOSSES[loss]


def test_sharded_batch_gives_the_same_step(small):
  """Over a 2-device mesh BatchNorm statistics are over the global batch, so the step equals the
  single-device step."""
  assert jax.device_count() >= 2
  _, state, step = small
  batch = _batch()
  want, want_m = step(state, batch, jax.random.PRNGKey(1))
  mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
  sharded = jax.device_put(batch, NamedSharding(mesh, P("data")))
  got, got_m = step(state, sharded, jax.random.PRNGKey(1))
  for a, b in zip(jax.tree.leaves((want, want_m)), jax.tree.leaves((got, got_m))):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_ema_and_sampling(small):
  method, state, step = small
  decay = EMA_DECAY
  assert _tree_equal(state.ema_params, state.params["generator"])
  assert jax.eval_shape(GAN(_config()).init, jax.random.PRNGKey(0), _batch()).ema_params is None
  new, _ = step(state, _batch(), jax.random.PRNGKey(1))
  want = jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, state.ema_params,
                      new.params["generator"])
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(new.ema_params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)

  sample = jax.jit(method.sample, static_argnums=2)
  images = sample(new, jax.random.PRNGKey(3), 5)
  assert images.shape == (5, 16, 16, 1) and images.dtype == jnp.float32
  assert float(jnp.abs(images).max()) <= 1.0
  # Sampling uses the EMA generator: replacing the EMA params changes the images, replacing the
  # live params does not.
  no_live = new.replace(params={**new.params, "generator": state.params["generator"]})
  np.testing.assert_array_equal(sample(no_live, jax.random.PRNGKey(3), 5), images)
  no_ema = new.replace(ema_params=new.params["generator"])
  assert not np.array_equal(sample(no_ema, jax.random.PRNGKey(3), 5), images)
  with pytest.raises(ValueError, match="unconditional"):
    method.sample(new, jax.random.PRNGKey(3), 5, cond=jnp.zeros(5, jnp.int32))


# ---------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("size", [8, 24, 48])
def test_bad_image_size_is_a_config_error(size):
  with pytest.raises(ConfigError, match=r"data\.image_size.*power of two >= 16"):
    GAN(_config(image_size=size))


def test_bad_config_values_are_config_errors():
  c = _config()
  c.gan.loss = "wgan"
  with pytest.raises(ConfigError, match=r"gan\.loss=.wgan.*hinge.*lsgan.*minimax.*non_saturating.*wasserstein"):
    GAN(c)
  c = _config()
  c.model.arch = "stylegan9"
  with pytest.raises(ConfigError, match=r"model\.arch='stylegan9'"):
    GAN(c)
  c = _config()
  del c.optim.discriminator
  with pytest.raises(ConfigError, match=r"optim\.discriminator is missing"):
    GAN(c)


def _load_config(name: str, arg=None):
  spec = importlib.util.spec_from_file_location(name, REPO / "configs" / "dcgan" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


@pytest.mark.parametrize("name,channels,source", [("mnist", 1, "tfds"), ("cifar10", 3, "folder")])
def test_configs(name, channels, source):
  c = _load_config(name)
  assert (c.method, c.model.arch, c.gan.loss, c.data.source) == ("gan", "dcgan", "non_saturating", source)
  assert (c.data.image_size, c.data.channels, c.model.z_dim, c.train.batch_size) == (32, channels, 100, 128)
  for player in ("generator", "discriminator"):
    assert (c.optim[player].name, c.optim[player].lr, c.optim[player].b1) == ("adam", 2e-4, 0.5)
  GAN(c).validate()
  tiny = _load_config(name, "tiny")
  method = GAN(tiny)
  batch = _batch(tiny.train.batch_size, 32, channels)
  # Trace (without compiling) init and one step of the smoke variant.
  state = jax.eval_shape(method.init, jax.random.PRNGKey(0), batch)
  _, metrics = jax.eval_shape(method.train_step, state, batch, jax.random.PRNGKey(1))
  assert metrics["loss"].shape == () and state.ema_params is not None


def test_bfloat16_compute_keeps_float32_params_and_outputs():
  c = _config()
  c.model.dtype = "bfloat16"
  method = GAN(c)
  state = jax.eval_shape(method.init, jax.random.PRNGKey(0), _batch())
  new, metrics = jax.eval_shape(method.train_step, state, _batch(), jax.random.PRNGKey(1))
  assert {x.dtype for x in jax.tree.leaves((new.params, new.model_state))} == {jnp.dtype("float32")}
  assert {m.dtype for m in metrics.values()} == {jnp.dtype("float32")}
  images = jax.eval_shape(lambda s, r: method.sample(s, r, 3), state, jax.random.PRNGKey(2))
  assert images.dtype == jnp.float32


def test_gan_does_not_import_tensorflow():
  code = "import sys, jaxgen.methods.gan; assert 'tensorflow' not in sys.modules, 'tf imported'"
  subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------- learning check

def _image_stats(x: np.ndarray) -> tuple[np.ndarray, float, float]:
  """Per-pixel mean image [H, W, C], global std and fraction of background pixels (< -0.9) of
  images in [-1, 1]."""
  return x.mean(0), float(x.std()), float((x < -0.9).mean())


def test_learns_mnist(mnist_numpy):
  """500 steps at batch 64 of a narrow DCGAN (G width 16, D width 4) on 10k real MNIST digits.

  Measured here, from 512 EMA samples, untrained -> 500 steps: the RMS distance of the per-pixel
  mean image to the data's 0.86 -> 0.17 (5.0x); the gap to the data's global std (0.552)
  0.55 -> 0.22 (2.45x); the gap to its background fraction (0.86) 0.86 -> 0.67 (printed, not
  asserted: the EMA's blur makes it lag, it is 0.12-0.38 by step 600); D's mean accuracy over the
  last 100 steps 0.915 (real 0.90, fake 0.93). GAN dynamics are chaotic (bit-level changes, such as
  a jitted instead of an eager init, move these numbers by ~20 %), hence the margins. With D as
  wide as G, D wins outright here (accuracy 0.97-0.99). Broken losses fail: with G's loss
  sign-flipped the mean-image gap ends at 0.90 and D's accuracy at 1.0; with D's labels swapped,
  0.92 and 0.0."""
  x = mnist_numpy["train"][0][:10_000]
  x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))).astype(np.float32) / 127.5 - 1.0  # 32x32, [-1, 1]
  method = GAN(_config(image_size=32, gf=16, df=4, z_dim=100, ema=0.99))
  state = _init(method, {"image": jnp.asarray(x[:64])})
  step = jax.jit(method.train_step, donate_argnums=0)
  sample = jax.jit(method.sample, static_argnums=2)
  data_mean, data_std, data_bg = _image_stats(x)

  def gaps(state) -> np.ndarray:
    mean, std, bg = _image_stats(np.asarray(sample(state, jax.random.PRNGKey(123), 512)))
    return np.array([np.sqrt(((mean - data_mean) ** 2).mean()), abs(std - data_std), abs(bg - data_bg)])

  gaps0 = gaps(state)
  rs = np.random.RandomState(0)
  accs = []
  for i in range(500):
    batch = {"image": jnp.asarray(x[rs.randint(0, len(x), 64)])}
    state, metrics = step(state, batch, jax.random.PRNGKey(i))
    accs.append((metrics["d_real_acc"], metrics["d_fake_acc"]))
  gaps1 = gaps(state)
  acc = np.asarray(accs[-100:], np.float32).mean(0)
  print(f"gaps to the data (mean-image RMS, std, background fraction): {gaps0} -> {gaps1}; "
        f"D accuracy (real, fake) over the last 100 steps {acc}")
  assert gaps0[0] > 0.7 and gaps0[1] > 0.5  # the untrained generator is far from the data
  # The mean-image and std gaps shrink by these factors (measured 5.0 and 2.45).
  assert gaps1[0] < gaps0[0] / 3 and gaps1[1] < gaps0[1] / 1.5, (gaps0, gaps1)
  assert acc.mean() < 0.97  # D is not winning outright (1.0 when G is stuck)
