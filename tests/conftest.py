"""Shared pytest fixtures.

Every test process sees 2 simulated CPU devices (so sharded code paths run), unless XLA_FLAGS already
forces a count. Real datasets come from one setting: JAXGEN_TEST_DATA (default ../shared/datasets
beside the repository); tests that need it skip with a clear reason when it is absent.
"""
import atexit
import gzip
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=2").strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxgen  # noqa: E402,F401  (sets the CPU XLA defaults before JAX starts)
import jax  # noqa: E402

# One persistent compilation cache per test session: many tests compile the same step / sampler of the
# same :tiny config (resume tests recompile what they compiled before the interruption), and XLA:CPU
# compilation is a large part of the suite's time. A fresh directory each session, so CI and local runs
# never reuse executables across jaxgen or jaxlib versions.
if not os.environ.get("JAXGEN_TEST_NO_XLA_CACHE"):
  _XLA_CACHE = tempfile.mkdtemp(prefix="jaxgen-test-xla-cache-")
  atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
  jax.config.update("jax_compilation_cache_dir", _XLA_CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

REPO = pathlib.Path(__file__).resolve().parents[1]
TEST_DATA = pathlib.Path(os.environ.get("JAXGEN_TEST_DATA", REPO.parent / "shared" / "datasets"))


@pytest.fixture(scope="session")
def shared_datasets() -> pathlib.Path:
  """The shared real datasets folder (see ../shared/datasets/README.md)."""
  if not TEST_DATA.is_dir():
    pytest.skip(f"real datasets not found at {TEST_DATA}; set JAXGEN_TEST_DATA to the folder "
                "holding mnist/, fashion_mnist/, cifar10-jpeg.tar.gz, ...")
  return TEST_DATA


def _read_idx(path: pathlib.Path) -> np.ndarray:
  with gzip.open(path, "rb") as f:
    data = f.read()
  ndim = data[3]
  shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.fixture(scope="session")
def mnist_numpy(shared_datasets):
  """Real MNIST as numpy (from the official idx files): dict split -> (images uint8 [N,28,28,1], labels)."""
  d = shared_datasets / "mnist"
  out = {}
  for split, prefix in (("train", "train"), ("test", "t10k")):
    x = _read_idx(d / f"{prefix}-images-idx3-ubyte.gz")[..., None]
    y = _read_idx(d / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int32)
    out[split] = (x, y)
  return out


@pytest.fixture(scope="session")
def cifar_jpeg_numpy(shared_datasets):
  """The first 1024 training and 256 test images of the CIFAR-10 JPEG archive, decoded with PIL:
  dict split -> uint8 [N, 32, 32, 3] (one pass over the start of the tar; no unpacking to disk)."""
  import io
  import tarfile
  from PIL import Image
  want = {"train": 1024, "test": 256}
  out = {k: [] for k in want}
  with tarfile.open(shared_datasets / "cifar10-jpeg.tar.gz") as tar:
    for m in tar:
      parts = m.name.split("/")
      if m.isfile() and len(parts) == 4 and parts[1] in want and len(out[parts[1]]) < want[parts[1]]:
        out[parts[1]].append(np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")))
      if all(len(out[k]) == n for k, n in want.items()):
        break
  return {k: np.stack(v) for k, v in out.items()}


@pytest.fixture(scope="session")
def cifar_jpeg_classes(shared_datasets):
  """A class-balanced labelled part of the CIFAR-10 JPEG archive (whose members are grouped by
  class): the first 100 training and 50 test images of each of the 10 classes, decoded with PIL:
  dict split -> (uint8 [N, 32, 32, 3], int32 [N] labels in sorted class-name order), N = 1000 / 500."""
  import io
  import tarfile
  from PIL import Image
  want = {"train": 100, "test": 50}
  out = {k: {} for k in want}
  with tarfile.open(shared_datasets / "cifar10-jpeg.tar.gz") as tar:
    for m in tar:
      parts = m.name.split("/")
      if not (m.isfile() and len(parts) == 4 and parts[1] in want):
        continue
      rows = out[parts[1]].setdefault(parts[2], [])
      if len(rows) < want[parts[1]]:
        rows.append(np.asarray(Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")))
  result = {}
  for split, by_class in out.items():
    names = sorted(by_class)
    assert len(names) == 10 and all(len(by_class[n]) == want[split] for n in names), split
    result[split] = (np.concatenate([np.stack(by_class[n]) for n in names]),
                     np.repeat(np.arange(10, dtype=np.int32), want[split]))
  return result
