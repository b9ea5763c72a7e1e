"""Compute dtypes from config names: the one place a "float32" / "bfloat16" string becomes a dtype."""
from typing import Any

import jax.numpy as jnp

from jaxgen.errors import ConfigError

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def parse_dtype(name: str, where: str = "config.model.dtype",
                allowed: tuple[str, ...] = ("float32", "bfloat16")) -> Any:
  """`name` as a jnp dtype; ConfigError naming `where` and the choices when it is not in `allowed`.
  Params stay float32 whatever the compute dtype (see DESIGN.md, precision)."""
  if name not in allowed:
    raise ConfigError(f"{where}={name!r} is not supported; use one of {allowed}.")
  return COMPUTE_DTYPES[name]
