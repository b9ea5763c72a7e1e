r"""Class-conditional DDPM on CIFAR-10 with classifier-free guidance (Ho & Salimans 2022,
arXiv:2207.12598).

Run:
  python -m jaxgen.main --config=configs/diffusion/cifar10_cfg.py --workdir=/tmp/cfg --mode=train
  python -m jaxgen.main --config=configs/diffusion/cifar10_cfg.py --workdir=/tmp/cfg --mode=eval \
      --config.sample.guidance_scale=1.3
Smoke test: --config=configs/diffusion/cifar10_cfg.py:tiny

The network and training are DDPM CIFAR-10's (configs/diffusion/ddpm_cifar10.py) plus a class
embedding (11 rows: 10 classes + the null label) and label dropout p_uncond = 0.1 (the paper's
value; it sweeps 0.1 / 0.2 on ImageNet 64x64). Sampling: DDPM ancestral, eps = eps_u + s (eps_c -
eps_u) (s = 1 conditional; the paper's w = s - 1). The paper has no CIFAR-10 table, so there is
no published number to match: the target is an FID below the unconditional model's 3.17 at a mild
scale (s ~ 1.1 - 1.5; large s trades FID for IS, as in the paper's Figure / Table 1 on ImageNet).
NOT YET MEASURED.
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg
from jaxgen.diffusion.defaults import make_tiny


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_cifar10.py"))
  c.diffusion.class_conditional = True
  c.diffusion.label_dropout = 0.1
  c.sample.guidance_scale = 1.3
  if args.tiny:
    make_tiny(c)
  return c
