"""Config validation, run before anything compiles: every bad value stops with its name and the fix."""
import jax
import ml_collections

from jaxgen import evaluators, parallel, pretrained, registry
from jaxgen import state as state_lib
from jaxgen.errors import ConfigError
from jaxgen.methods.base import Method


def _check_batch(name: str, batch: int, shards: int, processes: int) -> None:
  if batch <= 0 or batch % shards:
    raise ConfigError(
        f"{name}={batch} is not divisible by the {shards} devices the batch is split over "
        f"(mesh data x fsdp). Use a multiple of {shards}, e.g. --config.{name.removeprefix('config.')}="
        f"{max(shards, (max(batch, 1) // shards) * shards)}.")
  if batch % processes:
    raise ConfigError(f"{name}={batch} is not divisible by the {processes} processes; use a multiple "
                      f"of {processes}.")


def _check_sample_metrics(names: tuple[str, ...]) -> None:
  known = ("fid", "is", "kid", "pr")
  if set(names) - set(known):
    raise ConfigError(f"config.eval.metrics={names} has unknown names {sorted(set(names) - set(known))}; "
                      f"choose from {known}.")
  if "is" in names:
    from jaxgen.metrics import weights  # pylint: disable=g-import-not-at-top  (no TF, no I/O at import)
    if not weights.logits_weights_available():
      raise ConfigError(
          "config.eval.metrics includes 'is', but no Inception weights with the 1008-way classifier are "
          f"available. {weights.WHERE_TO_GET} Or leave IS out: "
          "--config.eval.metrics='(\"fid\", \"kid\")'.")


def validate(config: ml_collections.ConfigDict, *, benchmark: bool = False,
             num_devices: int | None = None, process_count: int | None = None) -> Method:
  """Checks the config and returns the method it names. Raises ConfigError on the first bad value.
  benchmark=True skips what --mode benchmark does not use: the dataset (it runs on synthetic
  batches) and the sample-based eval metrics."""
  method = registry.create_method(config)
  num_devices = jax.device_count() if num_devices is None else num_devices
  process_count = jax.process_count() if process_count is None else process_count
  shards = parallel.num_batch_shards(config.mesh, num_devices)
  _check_batch("config.train.batch_size", config.train.batch_size, shards, process_count)
  _check_batch("config.eval.batch_size", config.eval.batch_size, shards, process_count)
  if config.train.num_steps < 0:
    raise ConfigError(f"config.train.num_steps={config.train.num_steps} must be >= 0.")
  for key in ("log_every", "ckpt_every", "sample_every", "eval_every"):
    if config.train[key] < 0:
      raise ConfigError(f"config.train.{key}={config.train[key]} must be >= 0 (0 = never).")
  if config.train.log_every == 0:
    raise ConfigError("config.train.log_every=0: logging cannot be disabled; use a large value instead.")
  state_lib.validate_ema(config.train)
  k = config.train.get("steps_per_dispatch", 1)
  if not isinstance(k, int) or k < 1:
    raise ConfigError(f"config.train.steps_per_dispatch={k!r} must be an int >= 1 (1 = one step per "
                      "call; e.g. 8 to run 8 steps in one compiled lax.scan).")
  if not method.can_sample:
    _check_no_sampling(config)
  _check_labels(config, method)
  if benchmark and config.benchmark.get("sample_batch", 0) > 0:
    _check_batch("config.benchmark.sample_batch", config.benchmark.sample_batch, shards, process_count)
  if not benchmark:
    _check_sample_metrics(tuple(config.eval.metrics))
    evaluators.validate(config, method.can_sample)
    from jaxgen import data  # pylint: disable=g-import-not-at-top  (TF only where data is read)
    data.validate(config.data)
  method.validate()
  pretrained.validate(config, tuple(method.frozen_parts()))
  return method


def _check_labels(config: ml_collections.ConfigDict, method: Method) -> None:
  """config.eval.labels: class ids in [0, data.num_classes) for a method that samples per label."""
  labels = tuple(config.eval.get("labels", ()))
  if not labels:
    return
  if "label" not in method.cond_keys:
    raise ConfigError(f"config.eval.labels={labels}, but config.method={config.method!r} with this "
                      f"config does not sample per class (no label conditioning); drop "
                      f"--config.eval.labels or train a class-conditional model.")
  n = config.data.num_classes
  bad = [v for v in labels if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < n]
  if bad:
    raise ConfigError(f"config.eval.labels={labels} has {bad}, not class ids in [0, {n}) "
                      f"(config.data.num_classes={n}); e.g. --config.eval.labels='(3, 7)'.")


def _check_no_sampling(config: ml_collections.ConfigDict) -> None:
  """A method that draws no samples (e.g. a classifier) must not be asked for any."""
  fix = "this method draws no samples"
  if config.train.sample_every:
    raise ConfigError(f"config.train.sample_every={config.train.sample_every}: {fix} "
                      f"(config.method={config.method!r}); set --config.train.sample_every=0.")
  if config.eval.num_samples:
    raise ConfigError(f"config.eval.num_samples={config.eval.num_samples}: {fix} "
                      f"(config.method={config.method!r}); set --config.eval.num_samples=0.")
  if config.eval.metrics:
    raise ConfigError(f"config.eval.metrics={tuple(config.eval.metrics)} need samples, and {fix} "
                      f"(config.method={config.method!r}); set --config.eval.metrics='()'.")
