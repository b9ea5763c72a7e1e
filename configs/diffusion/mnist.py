r"""DDPM on MNIST: a small U-Net that gives recognisable digits after minutes on a CPU.

Run:
  python -m jaxgen.main --config=configs/diffusion/mnist.py --workdir=/tmp/ddpm_mnist --mode=train
Smoke test (seconds): --config=configs/diffusion/mnist.py:tiny
Needs TFDS's mnist prepared offline (see ../shared/datasets/README.md; `data_dir` via
--config.data.data_dir).

No paper number: DDPM reports no MNIST result. What this targets: digit-like samples (check the
sample grids in the workdir) and a test bound well below 8 bits/dim (uniform); the learning check in
tests/test_diffusion_method.py measures the loss and a background-fraction statistic of samples
after 150 steps of a smaller net. Native 28x28: the U-Net downsamples 28 -> 14 -> 7 with attention
at 7x7. T = 1000 linear betas, eps-prediction; DDIM 50-step sampling for speed.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.diffusion.defaults import diffusion_base_config, make_tiny


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = diffusion_base_config()
  c.data.source = "tfds"
  c.data.name = "mnist"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.num_classes = 10

  c.model.ch = 32
  c.model.ch_mult = (1, 2, 2)
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = (7,)
  c.model.dropout = 0.0
  c.model.num_groups = 8

  c.optim.lr = 1e-3
  c.optim.warmup_steps = 200

  c.train.batch_size = 64
  c.train.num_steps = 4000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.ckpt_every = 1000
  c.train.ema_decay = 0.995

  c.sample.sampler = "ddim"
  c.sample.steps = 50
  c.sample.eta = 0.0

  c.eval.batch_size = 128
  c.eval.vlb_timesteps = 50      # unbiased estimate of the bound from 50 of the 1000 terms
  if args.tiny:
    make_tiny(c)
  return c
