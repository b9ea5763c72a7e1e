"""`--mode benchmark`: training-step throughput of any config, on synthetic batches of the right shapes.

Reports AOT compile time, median step time (wall and CPU) over timed steps after warm-up, images/s
(total and per device), FLOPs per step from XLA's cost analysis, MFU against the device's peak where
known, and peak memory where the backend reports it. No data is read, so this needs no dataset (and
no TensorFlow). With config.benchmark.sample_batch > 0 it also times the method's sampler as
configured (e.g. 50-step DDIM with `configs/diffusion/ddim_cifar10.py:50`): compile time and
images/s of one sampling call. Functions a method names in `timed_functions()` (CLIP's image and text
encoders) are timed on the same batch: <name>_per_s rows per second.
"""
import json
import os
import statistics
import time
from typing import Optional

import jax
import ml_collections
import numpy as np

from jaxgen import config_check, parallel

# Dense peak FLOP/s per device for bf16 matmuls (the convention MFU is quoted against).
PEAK_FLOPS = {
    "H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 125e12,
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
}


def device_peak_flops(device: jax.Device) -> Optional[float]:
  kind = device.device_kind
  for name, flops in PEAK_FLOPS.items():
    if name.lower() in kind.lower():
      return flops
  return None


def synthetic_batch(example: dict, num_classes: int, seed: int = 0) -> dict:
  """Random values with the example batch's shapes: images uniform in [-1, 1], labels in range."""
  rng = np.random.default_rng(seed)
  out = {}
  for k, v in example.items():
    v = np.asarray(v)
    if k == "image" or k.endswith("/image"):   # "<stream>/image" too (CycleGAN's domains)
      out[k] = rng.uniform(-1, 1, v.shape).astype(v.dtype)
    elif k == "label":
      out[k] = rng.integers(0, max(num_classes, 1), v.shape).astype(v.dtype)
    elif np.issubdtype(v.dtype, np.integer):
      out[k] = rng.integers(1, 256, v.shape).astype(v.dtype)
    else:
      out[k] = np.ones_like(v)
  return out


def benchmark(config: ml_collections.ConfigDict) -> dict:
  """Times config's training step; returns the figures as a dict."""
  from jaxgen import data  # pylint: disable=g-import-not-at-top  (example_batch needs no TF)
  from jaxgen import pretrained, sampling  # pylint: disable=g-import-not-at-top
  from jaxgen.train import compile_train_step, create_state, root_key  # pylint: disable=g-import-not-at-top
  bc = config.benchmark
  batch_size = bc.batch_size if bc.batch_size > 0 else config.train.batch_size
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.train.batch_size = batch_size
  method = config_check.validate(config, benchmark=True)
  mesh = parallel.create_mesh(config.mesh)
  example = data.example_batch(config.data, batch_size)
  init_fn, abstract, shardings = create_state(method, config, mesh, example)
  batch = parallel.global_batch(
      parallel.local_rows(synthetic_batch(example, config.data.num_classes, config.seed)), mesh)
  state = init_fn(root_key(config), batch)
  # Frozen parts as zeros of their shapes: the step's cost does not depend on their values.
  state = state.replace(frozen=pretrained.placeholders(abstract.frozen, shardings.frozen))
  jitted = compile_train_step(method, config, mesh, shardings)
  t0 = time.perf_counter()
  lowered = jitted.lower(abstract, parallel.abstract_batch(example, mesh))
  t1 = time.perf_counter()
  compiled = lowered.compile()
  t2 = time.perf_counter()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get("flops", 0.0)) if cost else 0.0   # per device (the SPMD program)

  times, cpu_times = [], []
  for i in range(bc.warmup_steps + bc.steps):
    t, c = time.perf_counter(), time.process_time()
    state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    if i >= bc.warmup_steps:
      times.append(time.perf_counter() - t)
      cpu_times.append(time.process_time() - c)
  step_s = statistics.median(times)
  n_dev = jax.device_count()
  sample_figures = {}
  if bc.get("sample_batch", 0) > 0:
    sample_fn = sampling.make_sampler(method, mesh, bc.sample_batch)
    key = jax.random.PRNGKey(config.seed)
    cond = _synthetic_cond(method, config, bc.sample_batch, mesh)
    t = time.perf_counter()
    compiled_sample = sample_fn.lower(state, key, cond).compile()
    t_compile = time.perf_counter() - t
    t = time.perf_counter()
    jax.block_until_ready(compiled_sample(state, key, cond))
    sample_s = time.perf_counter() - t
    sample_figures = {"sample_batch": bc.sample_batch, "sampler": _sampler_name(config),
                "sample_compile_s": t_compile, "sample_s": sample_s,
                "sample_images_per_s": bc.sample_batch / sample_s,
                "sample_images_per_s_per_device": bc.sample_batch / sample_s / n_dev}
  timed_figures = {}
  for name, fn in method.timed_functions().items():   # e.g. CLIP's image / text encoding
    compiled_fn = jax.jit(fn).lower(state, batch).compile()
    fn_times = []
    for i in range(bc.warmup_steps + bc.steps):
      t = time.perf_counter()
      jax.block_until_ready(compiled_fn(state, batch))
      if i >= bc.warmup_steps:
        fn_times.append(time.perf_counter() - t)
    timed_figures[f"{name}_s_median"] = statistics.median(fn_times)
    timed_figures[f"{name}_per_s"] = batch_size / statistics.median(fn_times)
  device = jax.devices()[0]
  peak = device_peak_flops(device)
  mem = device.memory_stats() or {}
  result = {
      "config_method": config.method,
      "device": device.device_kind,
      "num_devices": n_dev,
      "global_batch": batch_size,
      "compute_dtype": str(config.model.get("dtype", "float32")),
      "num_params": int(sum(np.prod(x.shape) for x in jax.tree.leaves(abstract.params))),
      "trace_lower_s": t1 - t0,
      "compile_s": t2 - t1,
      "step_s_median": step_s,
      "step_s_all": times,
      # CPU seconds of this process per step (all its threads): on a shared CPU host the wall time
      # depends on the other jobs' load, this much less (compare it at equal thread counts, e.g.
      # under `taskset -c 0`).
      "step_cpu_s_median": statistics.median(cpu_times),
      "images_per_s": batch_size / step_s,
      "images_per_s_per_device": batch_size / step_s / n_dev,
      "flops_per_step_per_device": flops,
      "tflops_per_s_per_device": flops / step_s / 1e12,
      "peak_flops_per_device": peak,
      "mfu": flops / step_s / peak if peak else None,
      "peak_memory_bytes": mem.get("peak_bytes_in_use"),
      "final_loss": float(jax.device_get(metrics["loss"])),
      **sample_figures,
      **timed_figures,
  }
  return result


def _synthetic_cond(method, config, num: int, mesh) -> Optional[dict]:
  """The sampler's conditioning for timing: the method's default, else synthetic rows of the data's
  shapes (no dataset is read)."""
  if not method.cond_keys:
    return None
  from jaxgen import data  # pylint: disable=g-import-not-at-top
  cond = method.default_cond(num)
  if cond is None:
    example = synthetic_batch(data.example_batch(config.data, num), config.data.num_classes, config.seed)
    cond = {k: example[k] for k in method.cond_keys}
  return parallel.global_batch(parallel.local_rows(jax.tree.map(np.asarray, cond)), mesh)


def _sampler_name(config: ml_collections.ConfigDict) -> str:
  s = config.get("sample")
  if s is None or "sampler" not in s:
    return config.method
  return f"{s.sampler} {s.steps} steps" if s.sampler == "ddim" else s.sampler


def format_table(result: dict) -> str:
  rows = [("device", f"{result['device']} x{result['num_devices']}"),
          ("params", f"{result['num_params']:,}"),
          ("global batch", result["global_batch"]),
          ("compute dtype", result["compute_dtype"]),
          ("compile (AOT)", f"{result['compile_s']:.2f} s (+ {result['trace_lower_s']:.2f} s trace/lower)"),
          ("step time (median)", f"{result['step_s_median'] * 1e3:.1f} ms"),
          ("step CPU time (median)", f"{result['step_cpu_s_median'] * 1e3:.1f} ms (all threads)"),
          ("images/s", f"{result['images_per_s']:.2f}"),
          ("images/s/device", f"{result['images_per_s_per_device']:.2f}"),
          ("GFLOPs/step/device", f"{result['flops_per_step_per_device'] / 1e9:.2f}"),
          ("TFLOP/s/device", f"{result['tflops_per_s_per_device']:.3f}"),
          ("MFU", "n/a (peak unknown for this device)" if result["mfu"] is None else f"{100 * result['mfu']:.1f} %"),
          ("peak memory", "n/a (not reported by backend)" if result["peak_memory_bytes"] is None
           else f"{result['peak_memory_bytes'] / 2**30:.2f} GiB")]
  if "sample_s" in result:
    rows += [("sampling", f"{result['sampler']}, batch {result['sample_batch']}"),
             ("sampling compile", f"{result['sample_compile_s']:.2f} s"),
             ("sampling time", f"{result['sample_s']:.2f} s"),
             ("sampled images/s", f"{result['sample_images_per_s']:.2f}"),
             ("sampled images/s/device", f"{result['sample_images_per_s_per_device']:.2f}")]
  rows += [(f"{k[:-len('_per_s')]} rows/s", f"{v:.2f}") for k, v in result.items()
           if k.endswith("_per_s") and not k.startswith(("images", "sample"))]
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(config: ml_collections.ConfigDict, workdir: Optional[str]) -> dict:
  result = benchmark(config)
  print(format_table(result), flush=True)
  if workdir and jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "benchmark.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result
