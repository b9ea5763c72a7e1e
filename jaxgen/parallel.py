"""Devices, mesh and sharding: the one parallelism path (jit + NamedSharding over a Mesh).

Mesh axes are ("data", "fsdp", "model"). Batches are split over ("data", "fsdp"); parameters are
replicated, or sharded over "fsdp" along their largest divisible dimension when config.mesh.fsdp > 1
(ZeRO-3 style: XLA inserts the all-gathers). Multi-host: each process feeds its own rows and
`make_array_from_process_local_data` assembles the global array.
"""
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from jaxgen.errors import ConfigError

BATCH_AXES = ("data", "fsdp")
# Params smaller than this stay replicated under FSDP: sharding them saves nothing and costs a gather.
FSDP_MIN_SIZE = 2 ** 14


def maybe_initialize_distributed() -> None:
  """jax.distributed.initialize() when launched as several processes.

  Recognised launches: JAXGEN_COORDINATOR / JAXGEN_NUM_PROCESSES / JAXGEN_PROCESS_ID (launch/
  multiprocess_cpu.sh), SLURM (srun) and TPU pods (auto-detected by JAX when called without args).
  """
  if jax.distributed.is_initialized():
    return
  env = os.environ
  if "JAXGEN_COORDINATOR" in env:
    if env.get("JAX_PLATFORMS", "") == "cpu":
      jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=env["JAXGEN_COORDINATOR"],
                               num_processes=int(env["JAXGEN_NUM_PROCESSES"]),
                               process_id=int(env["JAXGEN_PROCESS_ID"]))
  elif int(env.get("SLURM_NTASKS", "1")) > 1 or "TPU_WORKER_HOSTNAMES" in env or \
      "MEGASCALE_COORDINATOR_ADDRESS" in env:
    jax.distributed.initialize()


def mesh_shape(mesh_cfg, num_devices: int) -> tuple[int, int, int]:
  """(data, fsdp, model) sizes; data=-1 takes the devices the other axes leave."""
  fsdp, model = int(mesh_cfg.get("fsdp", 1)), int(mesh_cfg.get("model", 1))
  data = int(mesh_cfg.get("data", -1))
  if fsdp < 1 or model < 1 or num_devices % (fsdp * model):
    raise ConfigError(f"config.mesh fsdp={fsdp} x model={model} does not divide the {num_devices} "
                      "devices; choose sizes whose product divides the device count.")
  if data == -1:
    data = num_devices // (fsdp * model)
  if data * fsdp * model != num_devices:
    raise ConfigError(f"config.mesh data={data} x fsdp={fsdp} x model={model} != {num_devices} "
                      "devices; set config.mesh.data=-1 to use all remaining devices.")
  return data, fsdp, model


def create_mesh(mesh_cfg) -> Mesh:
  shape = mesh_shape(mesh_cfg, jax.device_count())
  return jax.make_mesh(shape, ("data", "fsdp", "model"), axis_types=(AxisType.Auto,) * 3)


def num_batch_shards(mesh_cfg, num_devices: int | None = None) -> int:
  data, fsdp, _ = mesh_shape(mesh_cfg, jax.device_count() if num_devices is None else num_devices)
  return data * fsdp


def batch_sharding(mesh: Mesh, stacked: bool = False) -> NamedSharding:
  """Rows split over the batch axes; stacked=True for [steps, B, ...] stacks of batches."""
  return NamedSharding(mesh, P(None, BATCH_AXES) if stacked else P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def _param_spec(shape: tuple[int, ...], fsdp: int) -> P:
  if fsdp == 1 or np.prod(shape, dtype=np.int64) < FSDP_MIN_SIZE:
    return P()
  # Largest dimension divisible by the fsdp size (later dims first on ties: conv output channels).
  for dim in sorted(range(len(shape)), key=lambda d: (-shape[d], -d)):
    if shape[dim] % fsdp == 0:
      spec = [None] * len(shape)
      spec[dim] = "fsdp"
      return P(*spec)
  return P()


def state_sharding(mesh: Mesh, abstract_state: Any) -> Any:
  """Shardings for every leaf of a (abstract) TrainState: FSDP rules for arrays, replicated scalars."""
  fsdp = mesh.shape["fsdp"]
  return jax.tree.map(lambda x: NamedSharding(mesh, _param_spec(tuple(x.shape), fsdp)), abstract_state)


def local_rows(batch: dict) -> dict:
  """The rows of a global-shaped numpy batch that belong to this process (equal contiguous slices)."""
  n, p = jax.process_count(), jax.process_index()
  return {k: np.split(np.asarray(v), n)[p] for k, v in batch.items()}


def global_batch(local_batch: dict, mesh: Mesh, stacked: bool = False) -> dict:
  """This process's rows (numpy) -> global jax.Arrays sharded over the batch axes (the second axis
  of [steps, L, ...] stacks when stacked=True)."""
  sharding = batch_sharding(mesh, stacked)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def abstract_batch(example: dict, mesh: Mesh) -> dict:
  """ShapeDtypeStructs (with the batch sharding) for AOT lowering."""
  sharding = batch_sharding(mesh)
  return {k: jax.ShapeDtypeStruct(np.shape(v), jnp.asarray(v).dtype, sharding=sharding)
          for k, v in example.items()}
