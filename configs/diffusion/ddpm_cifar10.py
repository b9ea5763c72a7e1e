r"""DDPM on CIFAR-10, unconditional (Ho, Jain & Abbeel 2020, arXiv:2006.11239).

Run:
  python -m jaxgen.main --config=configs/diffusion/ddpm_cifar10.py --workdir=/tmp/ddpm --mode=train
  python -m jaxgen.main --config=configs/diffusion/ddpm_cifar10.py --workdir=/tmp/ddpm --mode=eval
Smoke test (seconds on a CPU): --config=configs/diffusion/ddpm_cifar10.py:tiny

Target (Table 1, unconditional, L_simple): FID 3.17 and Inception Score 9.46 on 50k samples (FID
against the training set), and a test-set bound of <= 3.75 bits/dim (Table 1 row "L_simple"; the
<= 3.70 bits/dim of Table 1 is the model trained on the true bound L with fixed isotropic Sigma). NOT YET MEASURED here: the paper trained 800k steps in
10.6 h on a TPU v3-8; on these 2-core CPUs that is out of reach, so only smoke runs were done.

Paper hyper-parameters: 35.7M-parameter U-Net (ch 128, ch_mult (1,2,2,2), 2 res blocks, attention
at 16x16, dropout 0.1), T = 1000, betas linear 1e-4 .. 0.02, eps-prediction, Adam lr 2e-4 with 5000
warm-up steps, batch 128, gradient clipping at norm 1, random horizontal flips, EMA 0.9999, 800k
steps; sampling with the full 1000-step ancestral sampler, sigma_t^2 = beta_t ("fixed_large").

Data: the shared CIFAR-10 is a JPEG copy. Unpack it once:
  mkdir -p /tmp/cifar10 && tar -xzf /work/shared/datasets/cifar10-jpeg.tar.gz -C /tmp/cifar10
giving /tmp/cifar10/cifar10/{train,test}/<class>/NNNN.jpg (set --config.data.path if elsewhere).
Caveat: the JPEGs (quality ~75) differ slightly from the official lossless images, so FID against
these statistics (and bits/dim, which the JPEG artefacts change) is close to, not equal to, the
paper's protocol. Use data.source="tfds", name="cifar10" with a prepared TFDS copy for the exact one.

Eval: bits/dim sums all T = 1000 terms per test image (eval.vlb_timesteps=0), i.e. 1000 network
passes per batch; --config.eval.vlb_timesteps=K gives an unbiased estimate from K timesteps.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.diffusion.defaults import diffusion_base_config, make_tiny


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = diffusion_base_config()   # U-Net, Adam, schedule and sampler defaults are the paper's

  c.data.source = "folder"
  c.data.path = "/tmp/cifar10/cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10
  c.data.random_flip = True

  c.train.batch_size = 128
  c.train.num_steps = 800_000
  c.train.log_every = 500
  c.train.sample_every = 20_000
  c.train.ckpt_every = 10_000
  c.train.ema_decay = 0.9999

  c.eval.batch_size = 256
  c.eval.num_samples = 50_000
  c.eval.metrics = ("fid", "is")

  if args.tiny:
    make_tiny(c)
  return c

