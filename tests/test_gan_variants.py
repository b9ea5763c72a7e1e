"""The GAN variants on the one method: shared heads by hand, the papers' architectures, k D steps on
their own batch slices, regularisers in the loss, spectral state in the model state, labels and
InfoGAN codes reaching G, D and the sampler, config errors, and every configs/gan file."""
import glob
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import config_check, main
from jaxgen.configs import base_config, load_config_file
from jaxgen.data import sources
from jaxgen.gan import heads
from jaxgen.methods.base import ConfigError
from jaxgen.methods.gan import GAN, gan_defaults
from jaxgen.models import gan_mlp, infogan, sngan
from jaxgen.state import jit_once

REPO = pathlib.Path(__file__).resolve().parents[1]


def _config(arch="mlp", size=8, channels=1, num_classes=0, z_dim=6, batch=8, **gan):
  c = base_config()
  c.method = "gan"
  c.data.image_size, c.data.channels, c.data.num_classes = size, channels, num_classes
  c.model = ml_collections.ConfigDict(dict(
      arch=arch, z_dim=z_dim, z_prior="normal", dtype="float32", spectral_norm=False,
      gen_hidden=(16,), disc_hidden=(12,), maxout_pieces=3, input_dropout=0.0, hidden_dropout=0.0,
      gen_features=8, disc_features=4, hidden=16))
  c.gan = gan_defaults(**gan)
  adam = dict(name="adam", lr=1e-3, b1=0.5, b2=0.999)
  c.optim = ml_collections.ConfigDict(dict(generator=dict(adam), discriminator=dict(adam)))
  c.train.batch_size = batch
  return c


def _batch(n=8, size=8, channels=1, num_classes=0, seed=0):
  rs = np.random.RandomState(seed)
  b = {"image": jnp.asarray(rs.uniform(-1, 1, (n, size, size, channels)).astype(np.float32))}
  if num_classes:
    b["label"] = jnp.asarray(rs.randint(0, num_classes, n).astype(np.int32))
  return b


def _key(seed: int) -> jax.Array:
  # unsafe_rbg keys: XLA:CPU compiles the initialisers' random draws ~4x faster than threefry's
  # (the compile dominates these tests); the method takes any typed key.
  return jax.random.key(seed, impl="unsafe_rbg")


def _init(method, batch):
  return jit_once(method.init)(_key(0), batch)


def _leaves_equal(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ------------------------------------------------------------------------------------------ heads

class _Flat(nn.Module):
  """A trunk that returns its (conditioned) input flattened, so heads can be checked by hand."""
  @nn.compact
  def __call__(self, x, train, cond=None):
    return heads.concat_condition(x.reshape(x.shape[0], -1), cond)


def test_heads_by_hand():
  x = jnp.asarray(np.random.RandomState(0).normal(size=(3, 2, 2, 1)), jnp.float32)
  y = jnp.array([0, 2, 1])
  h = np.asarray(x).reshape(3, 4)
  d = heads.Discriminator(_Flat(), num_classes=3, cond_d="projection", aux_classes=3,
                          q_categorical=4, q_continuous=2, q_fixed_std=False)
  v = d.init(_key(0), x, train=False, label=y, q=True)
  p = v["params"]
  out = d.apply(v, x, train=False, label=y, q=True)
  # Projection (Miyato & Koyama Eq. 3): psi(h) + <V_y, h>.
  want = h @ p["logit"]["kernel"][:, 0] + p["logit"]["bias"][0] + np.sum(np.asarray(p["projection"])[y] * h, 1)
  np.testing.assert_allclose(out["logit"], want, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["class_logits"], h @ p["classifier"]["kernel"] + p["classifier"]["bias"],
                             rtol=1e-5, atol=1e-6)
  q = h @ p["q_out"]["kernel"] + p["q_out"]["bias"]       # q_hidden = 0: a linear Q
  np.testing.assert_allclose(out["q_cat_logits"], q[:, :4], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["q_cont_mean"], q[:, 4:6], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out["q_cont_logvar"], q[:, 6:8], rtol=1e-5, atol=1e-6)
  assert "q_cat_logits" not in d.apply(v, x, train=False, label=y)
  # Concatenation: the trunk sees [x, one-hot y], so the logit head has 4 + 3 inputs.
  dc = heads.Discriminator(_Flat(), num_classes=3, cond_d="concat")
  vc = dc.init(_key(0), x, train=False, label=y)
  assert vc["params"]["logit"]["kernel"].shape == (7, 1)
  hc = np.concatenate([h, np.eye(3)[y]], 1)
  np.testing.assert_allclose(dc.apply(vc, x, train=False, label=y)["logit"],
                             hc @ vc["params"]["logit"]["kernel"][:, 0] + vc["params"]["logit"]["bias"][0],
                             rtol=1e-5, atol=1e-6)


def test_concat_condition_tiles_channels():
  x = jnp.zeros((2, 3, 3, 1))
  cond = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  out = heads.concat_condition(x, cond)
  assert out.shape == (2, 3, 3, 3)
  np.testing.assert_array_equal(out[1, :, :, 2], np.ones((3, 3)))
  np.testing.assert_array_equal(out[1, :, :, 1], np.zeros((3, 3)))
  assert heads.concat_condition(x, None) is x


# ---------------------------------------------------------------------------------- architectures

def _shapes(module, *args, **kwargs):
  v = jax.eval_shape(lambda: module.init(_key(0), *args, **kwargs))
  return jax.tree.map(lambda a: a.shape, v)


def test_sngan_standard_cnn_is_table_3():
  g = _shapes(sngan.Generator(32, 3, 512), jnp.zeros((2, 128)), train=False)["params"]
  assert g["project"]["kernel"] == (128, 4 * 4 * 512)
  assert [g[f"up{i}"]["kernel"] for i in range(3)] == [(4, 4, 512, 256), (4, 4, 256, 128), (4, 4, 128, 64)]
  assert g["to_image"]["kernel"] == (3, 3, 64, 3)
  trunk = sngan.DiscriminatorTrunk(64, spectral=True)
  d = _shapes(heads.Discriminator(trunk, spectral=True), jnp.zeros((2, 32, 32, 3)), train=False)
  kernels = [d["params"]["trunk"][f"conv{i}"]["kernel"] for i in range(7)]
  assert kernels == [(3, 3, 3, 64), (4, 4, 64, 64), (3, 3, 64, 128), (4, 4, 128, 128),
                     (3, 3, 128, 256), (4, 4, 256, 256), (3, 3, 256, 512)]
  assert d["params"]["logit"]["kernel"] == (4 * 4 * 512, 1)
  # Every D weight has its power-iteration vector (u over the output axis) in the model state.
  assert {k: v["kernel_u"] for k, v in d["spectral"]["trunk"].items()}["conv6"] == (512,)
  assert d["spectral"]["logit"]["kernel_u"] == (1,)
  assert "batch_stats" not in d
  assert "spectral" not in _shapes(heads.Discriminator(sngan.DiscriminatorTrunk(64, spectral=False)),
                                   jnp.zeros((2, 32, 32, 3)), train=False)


def test_infogan_mnist_nets_are_table_1():
  g = _shapes(infogan.Generator(28, 1), jnp.zeros((2, 74)), train=False)["params"]
  assert (g["fc"]["kernel"], g["project"]["kernel"], g["up0"]["kernel"], g["to_image"]["kernel"]) == (
      (74, 1024), (1024, 7 * 7 * 128), (4, 4, 128, 64), (4, 4, 64, 1))
  d = heads.Discriminator(infogan.DiscriminatorTrunk(), q_categorical=10, q_continuous=2, q_hidden=128)
  v = _shapes(d, jnp.zeros((2, 28, 28, 1)), train=False, q=True)["params"]
  assert (v["trunk"]["conv0"]["kernel"], v["trunk"]["conv1"]["kernel"], v["trunk"]["fc"]["kernel"]) == (
      (4, 4, 1, 64), (4, 4, 64, 128), (7 * 7 * 128, 1024))
  # Q: FC 128 BN lReLU -> FC 10 logits + 2 means (fixed std) on the shared 1024 features.
  assert (v["q_hidden"]["kernel"], v["q_out"]["kernel"], v["logit"]["kernel"]) == (
      (1024, 128), (128, 12), (1024, 1))


def test_mlp_maxout_by_hand():
  trunk = gan_mlp.DiscriminatorTrunk(hidden=(3,), pieces=2, input_dropout=0.0, hidden_dropout=0.0)
  x = jnp.asarray(np.random.RandomState(0).normal(size=(2, 2, 2, 1)), jnp.float32)
  v = trunk.init(_key(0), x, train=False)
  k, b = np.asarray(v["params"]["hidden0"]["kernel"]), np.asarray(v["params"]["hidden0"]["bias"])
  pre = np.asarray(x).reshape(2, 4) @ k + b                  # [2, 3 units * 2 pieces]
  np.testing.assert_allclose(trunk.apply(v, x, train=False), pre.reshape(2, 3, 2).max(-1), rtol=1e-6)
  # Dropout is on in training (needs a key) and off in eval.
  drop = gan_mlp.DiscriminatorTrunk(hidden=(3,), pieces=2, input_dropout=0.5, hidden_dropout=0.0)
  a = drop.apply(v, x, train=True, rngs={"dropout": _key(1)})
  assert not np.allclose(a, drop.apply(v, x, train=False))
  g = gan_mlp.Generator((2, 2, 1), hidden=(5, 5))
  assert _shapes(g, jnp.zeros((1, 3)), train=False)["params"]["to_image"]["kernel"] == (5, 4)


# ------------------------------------------------------------------------------------ the method

def test_k_discriminator_steps_take_their_own_rows():
  """d_steps=2: train_step equals D steps on rows 0::2 then 1::2, then a G step on half the batch."""
  method = GAN(_config(d_steps=2, batch=8))
  batch = _batch(8)
  state = _init(method, batch)
  rng = _key(5)
  got, metrics = jax.jit(method.train_step)(state, batch, rng)
  d_rng, g_rng = jax.random.split(rng)
  keys = jax.random.split(d_rng, 2)
  s = state
  d_losses = []
  for i in range(2):
    s, m = jax.jit(method.discriminator_step)(s, batch["image"][i::2], keys[i], None, jnp.int32(i))
    d_losses.append(m["d_loss"])
  s, gm = jax.jit(method.generator_step, static_argnums=1)(s, 4, g_rng)
  for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(s.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(metrics["d_loss"], np.mean(d_losses), rtol=1e-5)
  np.testing.assert_allclose(metrics["g_loss"], gm["g_loss"], rtol=1e-5)
  # The same rows for both D steps would give another D.
  s2, _ = jax.jit(method.discriminator_step)(state, batch["image"][0::2], keys[0], None, jnp.int32(0))
  s2, _ = jax.jit(method.discriminator_step)(s2, batch["image"][0::2], keys[1], None, jnp.int32(1))
  assert not _leaves_equal(s2.params["discriminator"], got.params["discriminator"])


def test_gradient_penalty_and_lazy_r1_enter_the_loss():
  method = GAN(_config(loss="wasserstein", gp_weight=10.0))
  batch = _batch(8)
  state = _init(method, batch)
  _, m = jax.jit(method.train_step)(state, batch, _key(1))
  assert float(m["gp"]) > 0
  np.testing.assert_allclose(m["d_loss"], m["d_adv_loss"] + 10.0 * m["gp"], rtol=1e-5)
  np.testing.assert_allclose(m["d_adv_loss"], m["d_fake_logit"] - m["d_real_logit"], rtol=1e-4, atol=1e-6)

  method = GAN(_config(r1_gamma=2.0, r1_every=2))
  state = _init(method, batch)
  step = jax.jit(method.train_step)
  s1, m0 = step(state, batch, _key(1))
  _, m1 = step(s1, batch, _key(2))
  # Step 0 regularises (gamma / 2 * r1_every * R1), step 1 does not (its r1 is NaN).
  assert float(m0["r1"]) > 0 and np.isnan(m1["r1"])
  np.testing.assert_allclose(m0["d_loss"], m0["d_adv_loss"] + 0.5 * 2.0 * 2 * m0["r1"], rtol=1e-5)
  np.testing.assert_allclose(m1["d_loss"], m1["d_adv_loss"], rtol=1e-6)


def test_spectral_state_lives_in_the_model_state_and_advances():
  c = _config(arch="sngan", size=8, channels=3, loss="hinge")
  c.model.spectral_norm = True
  method = GAN(c)
  batch = _batch(8, 8, 3)
  state = _init(method, batch)
  spec = state.model_state["discriminator"]["spectral"]
  assert set(spec) == {"trunk", "logit"} and len(spec["trunk"]) == 7
  step = jax.jit(method.discriminator_step)
  s1, _ = step(state, batch["image"], _key(1))
  s2, _ = step(s1, batch["image"], _key(2))
  spec = lambda s: s.model_state["discriminator"]["spectral"]["trunk"]["conv3"]  # noqa: E731
  assert not np.allclose(spec(state)["kernel_u"], spec(s1)["kernel_u"])
  assert not np.allclose(spec(s1)["kernel_u"], spec(s2)["kernel_u"])
  # Each D step runs two training passes (real, fake) from the stored u, with the params it
  # started from: the estimate is a lower bound of their largest singular value that tightens
  # from step to step (a u reset every step would not).
  kernel = lambda s: np.asarray(s.params["discriminator"]["trunk"]["conv3"]["kernel"])  # noqa: E731
  true = lambda s: np.linalg.svd(kernel(s).reshape(-1, kernel(s).shape[-1]), compute_uv=False)[0]  # noqa: E731
  r1, r2 = float(spec(s1)["kernel_sigma"]) / true(state), float(spec(s2)["kernel_sigma"]) / true(s1)
  assert r1 < r2 <= 1 + 1e-5, (r1, r2)


def test_labels_reach_generator_and_discriminator():
  for cond_d in ("concat", "projection"):
    method = GAN(_config(num_classes=3, conditional=True, cond_d=cond_d))
    assert method.cond_keys == ("label",)
    np.testing.assert_array_equal(method.default_cond(5)["label"], [0, 1, 2, 0, 1])
    batch = _batch(8, num_classes=3)
    state = _init(method, batch)
    sample = jax.jit(method.sample, static_argnums=2)
    key = _key(3)
    a = sample(state, key, 4, {"label": jnp.array([0, 0, 0, 0])})
    b = sample(state, key, 4, {"label": jnp.array([1, 1, 1, 1])})
    assert a.shape == (4, 8, 8, 1) and not np.allclose(a, b)
    np.testing.assert_array_equal(sample(state, key, 4, None), sample(state, key, 4, {"label": jnp.array([0, 1, 2, 0])}))
    x = batch["image"]
    d = lambda y: method._discriminate(state.params["discriminator"], state.model_state["discriminator"],  # noqa: E731
                                       x, jnp.full((8,), y), mutable=False)[0]["logit"]
    assert not np.allclose(d(0), d(2)), cond_d
    _, m = jax.jit(method.train_step)(state, batch, _key(1))
    assert np.isfinite(m["loss"])


def test_acgan_and_infogan_heads_in_the_steps():
  method = GAN(_config(num_classes=3, ac_weight=1.0))
  assert method.cond_keys == ("label",) and method.labelled and not method.d_label
  batch = _batch(8, num_classes=3)
  state = _init(method, batch)
  _, m = jax.jit(method.train_step)(state, batch, _key(1))
  for k in ("ac_real_acc", "ac_fake_acc", "ac_nll", "g_ac_nll"):
    assert np.isfinite(m[k]), k
  # Near init the classifier is at chance: NLL ~ log 3 for each of real and fake.
  np.testing.assert_allclose(m["ac_nll"], 2 * np.log(3), rtol=0.1)
  np.testing.assert_allclose(m["d_loss"], m["d_adv_loss"] + m["ac_nll"], rtol=1e-5)

  method = GAN(_config(info=dict(categorical=4, continuous=2, q_hidden=0)))
  assert method.z_in_dim() == 6 + 4 + 2 and method.cond_keys == ()
  state = _init(method, _batch(8))
  _, m = jax.jit(method.train_step)(state, _batch(8), _key(1))
  for k in ("d_info_cat_acc", "d_info_mi_cat", "d_info_mi_cont", "g_info_mi_cat"):
    assert np.isfinite(m[k]), k
  assert float(m["d_info_mi_cat"]) <= np.log(4) + 1e-6


def test_infogan_traversal_grid():
  method = GAN(_config(info=dict(categorical=3, continuous=2, q_hidden=0, traversal=4,
                                 traversal_code=1, traversal_range=2.0)))
  assert method.cond_keys == ("code_cat", "code_cont")
  cond = method.default_cond(12)
  np.testing.assert_array_equal(cond["code_cat"], np.repeat([0, 1, 2], 4))
  np.testing.assert_allclose(cond["code_cont"][:4, 1], [-2, -2 / 3, 2 / 3, 2], rtol=1e-6)
  np.testing.assert_array_equal(cond["code_cont"][:, 0], 0)
  state = _init(method, _batch(8))
  sample = jax.jit(method.sample, static_argnums=2)
  images = np.asarray(sample(state, _key(0), 24, None)).reshape(2, 3, 4, -1)
  # One z per 3 x 4 grid: with the continuous code fixed, a row's columns would be equal, so
  # columns differ only through the traversed code; the two grids have different z.
  flat = jax.tree.map(jnp.asarray, method.default_cond(24))
  flat["code_cont"] = jnp.zeros_like(flat["code_cont"])
  still = np.asarray(sample(state, _key(0), 24, flat)).reshape(2, 3, 4, -1)
  np.testing.assert_allclose(still, np.broadcast_to(still[:, :, :1], still.shape), atol=1e-6)
  assert not np.allclose(images[0, 0, 0], images[0, 0, 3])       # columns vary the code
  assert not np.allclose(still[0, 0, 0], still[0, 1, 0])          # rows vary the category
  assert not np.allclose(still[0, 0, 0], still[1, 0, 0])          # another grid, another z


def test_unconditional_sample_rejects_cond():
  method = GAN(_config())
  state = _init(method, _batch(8))
  with pytest.raises(ValueError, match="unconditional"):
    method.sample(state, _key(0), 2, {"label": jnp.zeros(2, jnp.int32)})


# ---------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("changes,message", [
    (dict(d_steps=0), r"gan\.d_steps=0 must be an integer >= 1"),
    (dict(d_steps=3), r"batch_size=8 must be a multiple of config\.gan\.d_steps=3"),
    (dict(gp_weight=-1.0), r"gan\.gp_weight=-1\.0 must be >= 0"),
    (dict(r1_every=0), r"gan\.r1_every=0"),
    (dict(loss="wasserstein"), r"needs a Lipschitz critic.*gp_weight"),
    (dict(conditional=True), r"need labels.*num_classes=0"),
    (dict(ac_weight=1.0), r"need labels.*num_classes=0"),
    (dict(cond_d="film"), r"cond_d='film'"),
    (dict(info=dict(categorical=1)), r"categorical=1 is a constant code"),
    (dict(info=dict(categorical=10, continuous=2, traversal=5, traversal_code=2)), r"traversal_code=2"),
    (dict(info=dict(continuous=2, traversal=5)), r"needs info\.categorical >= 2"),
])
def test_bad_gan_values_are_config_errors(changes, message):
  with pytest.raises(ConfigError, match=message):
    GAN(_config(**changes))


def test_arch_specific_config_errors():
  with pytest.raises(ConfigError, match=r"ends in its own logit layer"):
    GAN(_config(arch="dcgan", size=16, num_classes=10, conditional=True))
  with pytest.raises(ConfigError, match=r"uses BatchNorm.*'sngan' or 'mlp'"):
    GAN(_config(arch="infogan", size=8, gp_weight=10.0))
  with pytest.raises(ConfigError, match=r"multiple of 8"):
    GAN(_config(arch="sngan", size=12))
  with pytest.raises(ConfigError, match=r"model\.maxout_pieces=0"):
    c = _config()
    c.model.maxout_pieces = 0
    GAN(c)
  c = _config()
  c.gan.n_critic = 5
  with pytest.raises(ConfigError, match=r"config\.gan\.n_critic is not a GAN setting"):
    GAN(c)
  c = _config()
  c.model.z_prior = "cauchy"
  with pytest.raises(ConfigError, match=r"z_prior='cauchy'"):
    GAN(c)


# --------------------------------------------------------------------------------------- configs

CONFIGS = sorted(glob.glob(str(REPO / "configs" / "gan" / "*.py")))


def test_every_variant_has_a_config():
  names = {pathlib.Path(p).stem for p in CONFIGS}
  assert {"vanilla_mnist", "cgan_mnist", "acgan_mnist", "infogan_mnist", "wgan_gp_cifar10",
          "sngan_cifar10"} <= names and any(n.startswith("lsgan_") for n in names)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: pathlib.Path(p).stem)
def test_configs_trace_a_step(path):
  """The full config builds; its :tiny variant traces init and one step (no compilation)."""
  GAN(load_config_file(path))
  tiny = load_config_file(path + ":tiny")
  method = GAN(tiny)
  d = tiny.data
  batch = _batch(tiny.train.batch_size, d.image_size, d.channels, d.num_classes)
  state = jax.eval_shape(method.init, _key(0), batch)
  _, metrics = jax.eval_shape(method.train_step, state, batch, _key(1))
  assert metrics["loss"].shape == ()
  images = jax.eval_shape(lambda s, r: method.sample(s, r, 4), state, _key(2))
  assert images.shape == (4, d.image_size, d.image_size, d.channels)


def test_paper_hyper_parameters_in_configs():
  wgan = load_config_file(str(REPO / "configs/gan/wgan_gp_cifar10.py"))
  assert (wgan.gan.loss, wgan.gan.gp_weight, wgan.gan.d_steps, wgan.train.batch_size) == (
      "wasserstein", 10.0, 5, 320)
  assert (wgan.optim.discriminator.lr, wgan.optim.discriminator.b1, wgan.optim.discriminator.b2) == (1e-4, 0.0, 0.9)
  sn = load_config_file(str(REPO / "configs/gan/sngan_cifar10.py"))
  assert (sn.gan.loss, sn.model.spectral_norm, sn.model.z_dim, sn.eval.fid_num_samples,
          sn.eval.reference_split) == ("hinge", True, 128, 50_000, "train")
  assert "29.3" in open(REPO / "configs/gan/sngan_cifar10.py").read()
  info = load_config_file(str(REPO / "configs/gan/infogan_mnist.py"))
  assert (info.gan.info.categorical, info.gan.info.continuous, info.model.z_dim,
          info.optim.generator.lr, info.optim.discriminator.lr) == (10, 2, 62, 1e-3, 2e-4)
  assert load_config_file(str(REPO / "configs/gan/vanilla_mnist.py") + ":loss=minimax").gan.loss == "minimax"
  sgd = load_config_file(str(REPO / "configs/gan/vanilla_mnist.py") + ":optim=sgd").optim.discriminator
  assert (sgd.name, sgd.lr, sgd.momentum, sgd.decay_rate) == ("sgd", 0.1, 0.5, 1 / 1.000004)
  assert load_config_file(str(REPO / "configs/gan/cgan_mnist.py") + ":cond_d=projection").gan.cond_d == "projection"


def test_cgan_sample_mode_takes_labels(tmp_path, mnist_numpy):
  """The loop end to end on real digits: train a few steps of the tiny cGAN, then --mode sample
  writes the grid and the labels it used (cycling 0..9 in each sampling batch)."""
  x, y = mnist_numpy["train"]
  sources.register_arrays("h1_mnist", x[:256], y[:256])
  c = load_config_file(str(REPO / "configs/gan/cgan_mnist.py") + ":tiny")
  with c.unlocked():
    c.data.source, c.data.name = "arrays", "h1_mnist"
    c.train.update(num_steps=4, log_every=2, sample_every=0, ckpt_every=4)
    c.eval.update(num_samples=20, batch_size=10)
  main.run(c, str(tmp_path), "train")
  path = main.run(c, str(tmp_path), "sample", num_samples=20)
  with np.load(path + ".npz") as f:
    assert f["image"].shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(f["cond_label"], np.arange(20) % 10)
  assert pathlib.Path(path + ".png").exists()
  # Requested classes, cycled over the whole sequence (25 samples in batches of 10).
  with c.unlocked():
    c.eval.labels = (3, 7, 1)
  path = main.run(c, str(tmp_path), "sample", num_samples=25)
  with np.load(path + ".npz") as f:
    np.testing.assert_array_equal(f["cond_label"], np.array([3, 7, 1])[np.arange(25) % 3])


def test_eval_labels_are_checked_before_anything_runs():
  c = load_config_file(str(REPO / "configs/gan/cgan_mnist.py") + ":tiny")
  with c.unlocked():
    c.eval.labels = (3, 10)
  with pytest.raises(ConfigError, match=r"config.eval.labels=\(3, 10\) has \[10\].*\[0, 10\)"):
    config_check.validate(c, benchmark=True)
  v = load_config_file(str(REPO / "configs/gan/vanilla_mnist.py") + ":tiny")
  with v.unlocked():
    v.eval.labels = (3,)
  with pytest.raises(ConfigError, match="does not sample per class"):
    config_check.validate(v, benchmark=True)
