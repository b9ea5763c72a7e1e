"""Least squares GAN (Mao et al. 2017) on MNIST: the DCGAN players with the least-squares loss.

Run:
  python -m jaxgen.main --config=configs/gan/lsgan_mnist.py --workdir=/tmp/lsgan --mode=train
Smoke test (seconds on a CPU): --config=configs/gan/lsgan_mnist.py:tiny

Loss: Eq. 2 with the 0-1 coding a = 0, b = c = 1 (D: 1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2];
G: 1/2 E[(D(G(z)) - 1)^2]), jaxgen.gan.losses.LSGAN. Paper's optimiser: Adam, lr 2e-4, beta1 0.5
(Sec. 4), as DCGAN. The paper trains a VGG-like net on LSUN scenes and reports no MNIST score;
this config is the DCGAN MNIST architecture (configs/dcgan/mnist.py, 32x32) with only the loss
changed, so the two runs compare the losses. Target: recognisable digits after ~5k steps, no
collapse (the paper's claim: more stable than the sigmoid cross-entropy).
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg
from jaxgen.methods.gan import gan_defaults


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dcgan", "mnist.py")
  c = load_config_file(f"{base}:tiny" if args.tiny else base)
  c.gan = gan_defaults(loss="lsgan")
  return c
