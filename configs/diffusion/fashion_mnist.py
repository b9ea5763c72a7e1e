r"""DDPM on Fashion-MNIST: the MNIST recipe (configs/diffusion/mnist.py) on clothes.

Run:
  python -m jaxgen.main --config=configs/diffusion/fashion_mnist.py --workdir=/tmp/ddpm_fmnist --mode=train
Smoke test (seconds): --config=configs/diffusion/fashion_mnist.py:tiny
Needs TFDS's fashion_mnist prepared offline (see ../shared/datasets/README.md).

No paper number (DDPM reports none for Fashion-MNIST); the target is recognisable garments in the
sample grids after minutes on a CPU. NOT YET MEASURED at full length.
"""
import os

import ml_collections

from jaxgen.configs import load_config_file


def get_config(arg=None) -> ml_collections.ConfigDict:
  c = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "mnist.py")
                       + (f":{arg}" if arg else ""))
  c.data.name = "fashion_mnist"
  return c
