r"""DDIM sampling (Song, Meng & Ermon 2021, arXiv:2010.02502) from the DDPM CIFAR-10 model.

Run (after training configs/diffusion/ddpm_cifar10.py into the same workdir; DDIM reuses the DDPM
network, only the sampler changes):
  python -m jaxgen.main --config=configs/diffusion/ddim_cifar10.py:50 --workdir=/tmp/ddpm --mode=eval
The arg is the number of sampling steps S in {10, 20, 50, 100, 1000} (Table 1's columns), optionally
with eta: `ddim_cifar10.py:50,eta=1.0`. Smoke test: `ddim_cifar10.py:tiny`.

Protocol (Table 1, CIFAR-10): FID of 50k samples, eta = 0, the "quadratic" timestep sub-sequence
for CIFAR-10. Targets for eta = 0: FID 13.36 (S=10), 6.84 (20), 4.67 (50), 4.16 (100), 4.04 (1000).
DDIM's own run trained its own DDPM-architecture model; with this repo's DDPM checkpoint the numbers
should be close, NOT YET MEASURED. The paper's code does not clip x_0 in DDIM sampling:
sample.clip_denoised=False here.
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg
from jaxgen.diffusion.defaults import make_tiny


def get_config(arg=None) -> ml_collections.ConfigDict:
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddpm_cifar10.py"))
  c.sample.sampler = "ddim"
  c.sample.skip_type = "quad"
  c.sample.clip_denoised = False
  c.sample.eta = 0.0
  args = parse_arg(arg, positional=("steps",), steps=50, eta=0.0, tiny=False)
  c.sample.steps, c.sample.eta = args.steps, args.eta
  if args.tiny:
    make_tiny(c)
    c.sample.steps = min(args.steps, 5)
  return c
