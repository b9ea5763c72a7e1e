"""jaxgen entry point.

  python -m jaxgen.main --config=configs/vae/mnist.py --workdir=/tmp/vae --mode=train
  python -m jaxgen.main --config=configs/vae/mnist.py:tiny --workdir=/tmp/vae --mode=sample --num_samples=64
  python -m jaxgen.main --config=configs/dcgan/mnist.py --workdir=/tmp/dcgan --mode=benchmark

Config values are overridden on the command line: --config.train.num_steps=1000.
Modes: train (resumes from workdir's latest checkpoint), eval (metrics -> workdir/eval/metrics.json),
sample (PNG grid + .npz under workdir/samples/), benchmark (step time, images/s, FLOPs, MFU ->
workdir/benchmark.json).
"""
import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import jaxgen  # noqa: F401  (CPU XLA defaults, before any backend starts)
from jaxgen import parallel
from jaxgen.errors import CheckpointError, ConfigError

config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/<family>/<dataset>.py[:arg]).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics, samples and results go.")
flags.DEFINE_enum("mode", "train", ["train", "eval", "sample", "benchmark"], "What to run.")
flags.DEFINE_integer("checkpoint_step", None, "eval/sample: this checkpoint instead of the latest.")
flags.DEFINE_integer("num_samples", None, "sample: how many images (default config.eval.num_samples).")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def run(config, workdir: str, mode: str, checkpoint_step=None, num_samples=None):
  jax.config.update("jax_default_prng_impl", config.prng_impl)
  parallel.maybe_initialize_distributed()
  if mode == "benchmark":
    from jaxgen import benchmark  # pylint: disable=g-import-not-at-top
    return benchmark.run(config, workdir)
  if workdir is None:
    raise ConfigError(f"--mode={mode} needs --workdir (where checkpoints and outputs go).")
  if mode == "train":
    from jaxgen import train  # pylint: disable=g-import-not-at-top
    return train.train(config, workdir)
  from jaxgen import config_check, evaluate, train  # pylint: disable=g-import-not-at-top
  method = config_check.validate(config)
  if mode == "sample" and not method.can_sample:
    raise ConfigError(f"--mode=sample: config.method={config.method!r} draws no samples; use "
                      "--mode=eval for its metrics.")
  mesh = parallel.create_mesh(config.mesh)
  state, _, ckpt = train.restore_or_init(method, config, mesh, workdir, step=checkpoint_step,
                                         require_checkpoint=True)
  ckpt.close()
  if mode == "eval":
    return evaluate.evaluate(method, config, state, mesh, workdir)
  path = evaluate.sample(method, config, state, mesh, workdir, num_samples)
  logging.info("Samples written to %s.png and %s.npz", path, path)
  return path


def main(argv):
  del argv
  logging.set_verbosity(logging.INFO)
  try:
    run(FLAGS.config, FLAGS.workdir, FLAGS.mode, FLAGS.checkpoint_step, FLAGS.num_samples)
  except (ConfigError, CheckpointError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
