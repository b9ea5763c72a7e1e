"""WGAN-GP (Gulrajani et al. 2017) on CIFAR-10: Wasserstein critic with the gradient penalty,
n_critic = 5, lambda = 10, on the SN-GAN standard CNN without normalisation in the critic.

Data: as configs/gan/sngan_cifar10.py (../data/cifar10 unpacked from ../shared/datasets).

Run:
  python -m jaxgen.main --config=configs/gan/wgan_gp_cifar10.py --workdir=/tmp/wgan_gp --mode=train
  python -m jaxgen.main --config=configs/gan/wgan_gp_cifar10.py --workdir=/tmp/wgan_gp --mode=eval
Smoke test (seconds on a CPU): --config=configs/gan/wgan_gp_cifar10.py:tiny

Algorithm 1's defaults: lambda = 10, n_critic = 5, Adam alpha 1e-4, beta1 0, beta2 0.9, batch 64;
no BatchNorm in the critic (the penalty is per example). Each of the 5 critic steps takes its own
64 real images, so train.batch_size = 320 rows per (generator) step.
Target: with this architecture (SN-GAN's Table 2 trains WGAN-GP on the same standard CNN):
Inception score 6.68 +- 0.06, FID 40.2. Gulrajani et al.'s own CIFAR-10 number, 7.86 +- 0.07
(Table 3, unsupervised), is for their ResNet. FID on 50k samples against the training set.
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sngan_cifar10.py")
  c = load_config_file(f"{base}:tiny" if args.tiny else base)
  c.model.spectral_norm = False
  c.gan.loss = "wasserstein"
  c.gan.gp_weight = 10.0
  c.gan.d_steps = 5
  adam = dict(name="adam", lr=1e-4, b1=0.0, b2=0.9)
  c.optim.generator = ml_collections.ConfigDict(dict(adam))
  c.optim.discriminator = ml_collections.ConfigDict(dict(adam))
  c.train.batch_size = (16 if args.tiny else 64) * c.gan.d_steps
  return c
