"""jaxgen: JAX/Flax research codebase for image generative models.

Importing jaxgen sets one XLA:CPU default before any JAX backend starts: convolutions go to Eigen
instead of YNNPACK (`--xla_cpu_experimental_ynn_fusion_type=` with an empty value). Measured on 2-core
x86 CPUs (see DESIGN.md / CPU_NOTES): YNNPACK's weight-gradient convolutions run at about half of
Eigen's speed, and the Inception-v3 feature extractor runs 2.5x faster without it. The flag only
affects the CPU backend; set JAXGEN_KEEP_XLA_FLAGS=1 to leave XLA_FLAGS untouched.
"""
import importlib.metadata
import os

__version__ = "0.1.0"

_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"


def _jaxlib_version() -> str:
  try:
    return importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return ""


def _set_cpu_defaults() -> None:
  # XLA aborts on flags it does not know, so the flag is only set for the jaxlib line it was measured
  # on (setup.py pins it); re-time and extend after an upgrade.
  if os.environ.get("JAXGEN_KEEP_XLA_FLAGS") or not _jaxlib_version().startswith("0.10."):
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if _YNN_FLAG not in flags:
    os.environ["XLA_FLAGS"] = (flags + f" {_YNN_FLAG}=").strip()


_set_cpu_defaults()
