"""End to end on real MNIST, the way a user runs it: TFDS's official `mnist` built offline from the raw
files (python -m jaxgen.data.prepare), the real config files with command-line style overrides, the
one training loop, then --mode eval / sample. The learning bounds were measured on this CPU and set
with margin so that a broken loss, data path or optimizer wiring fails them."""
import json
import pathlib

import numpy as np
import pytest

from jaxgen import main
from jaxgen.data import prepare
from jaxgen.configs import load_config_file

TRAIN_EXAMPLES = 6000
CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(scope="module")
def mnist_dir(shared_datasets, tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  prepare.prepare("mnist", manual_dir=str(shared_datasets / "mnist"), data_dir=str(data_dir),
                  max_examples_per_split=TRAIN_EXAMPLES)
  return str(data_dir)


def _metrics(workdir):
  return [json.loads(l) for l in open(f"{workdir}/metrics.jsonl")]


def test_vae_mnist_elbo_falls_below_bound(mnist_dir, tmp_path):
  cfg = load_config_file(str(CONFIGS / "vae" / "mnist.py"))
  with cfg.unlocked():
    cfg.data.data_dir = mnist_dir
    cfg.model.channels, cfg.model.hidden, cfg.model.latent_dim = (16, 32), 128, 16
    cfg.optim.schedule = "constant"
    cfg.train.update(batch_size=64, num_steps=400, log_every=50, sample_every=400, ckpt_every=400,
                     eval_every=0)
    cfg.eval.update(batch_size=100, num_examples=200, iwae_k=50, iwae_chunk=25, num_samples=16)
  main.run(cfg, str(tmp_path), "train")
  first, last = _metrics(tmp_path)[0]["loss"], _metrics(tmp_path)[-1]["loss"]
  res = main.run(cfg, str(tmp_path), "eval")
  print(f"VAE e2e: train loss {first:.1f} -> {last:.1f}; eval {res}")
  # Measured: train loss (mean of 50 steps) 308 -> 124; eval neg-ELBO 127, NLL(k=50) 120 nats.
  assert last < 145 < first
  assert res["neg_elbo"] < 150
  assert res["nll"] < res["neg_elbo"]
  assert (tmp_path / "samples" / "step_00000400.png").exists()


def test_dcgan_mnist_samples_move_toward_data(mnist_dir, tmp_path, mnist_numpy):
  cfg = load_config_file(str(CONFIGS / "dcgan" / "mnist.py"))
  with cfg.unlocked():
    cfg.data.data_dir = mnist_dir
    cfg.model.gen_features, cfg.model.disc_features = 16, 4
    cfg.train.update(batch_size=64, num_steps=400, log_every=20, sample_every=0, ckpt_every=400,
                     ema_decay=0.99)
    cfg.eval.update(batch_size=64, num_samples=256)
  data = np.pad(mnist_numpy["train"][0][:2000], ((0, 0), (2, 2), (2, 2), (0, 0))) / 127.5 - 1
  cfg0 = cfg.copy_and_resolve_references()
  with cfg0.unlocked():
    cfg0.train.num_steps = 0
  main.run(cfg0, str(tmp_path / "init"), "train")
  init = np.load(main.run(cfg0, str(tmp_path / "init"), "sample") + ".npz")["image"] / 127.5 - 1
  main.run(cfg, str(tmp_path / "run"), "train")
  fake = np.load(main.run(cfg, str(tmp_path / "run"), "sample") + ".npz")["image"] / 127.5 - 1
  gap = lambda x: float(np.sqrt(np.mean((x.mean(0) - data.mean(0)) ** 2)))
  # D accuracy per 20-step interval after the first 100 steps. In short runs it often sits near 1
  # for a while (seeds 0-2 all do); "stuck" means it never leaves 1, as with a broken G loss.
  d_acc = [(r["d_real_acc"] + r["d_fake_acc"]) / 2 for r in _metrics(tmp_path / "run") if r["step"] > 100]
  print(f"DCGAN e2e: mean-image gap {gap(init):.3f} -> {gap(fake):.3f}; std {init.std():.3f} -> "
        f"{fake.std():.3f} (data {data.std():.3f}); D accuracy per interval min {min(d_acc):.3f}, "
        f"last {d_acc[-1]:.3f}")
  # Measured (seed 0): mean-image gap 0.860 -> 0.317, std 0.004 -> 0.223 (data 0.550), D accuracy
  # min 0.973 over the intervals after step 100, on an AVX-512 x86 CPU. GAN training amplifies
  # float rounding, and XLA:CPU's code differs by instruction set: the same run gives 0.420 with
  # XLA_FLAGS=--xla_cpu_max_isa=AVX2 and 0.441 on the CI machine. A broken G loss stays near 0.86.
  assert gap(fake) < 0.6 * gap(init)
  assert abs(fake.std() - data.std()) < abs(init.std() - data.std()) / 1.5
  assert min(d_acc) < 0.99
