"""CycleGAN between two real CPU-sized domains: MNIST digits <-> Fashion-MNIST clothes (32x32 grey),
the paper's method (configs/cyclegan/horse2zebra.py) at a CPU width.

Data: TFDS "mnist" (stream a) and "fashion_mnist" (stream b), 60,000 train / 10,000 test images each,
each stream in its own order; prepare both offline first (README "Data"):
  python -m jaxgen.data.prepare mnist --manual_dir ../shared/datasets/mnist --data_dir ~/tensorflow_datasets
  python -m jaxgen.data.prepare fashion_mnist --manual_dir ../shared/datasets/fashion_mnist --data_dir ~/tensorflow_datasets
Run:
  python -m jaxgen.main --config=configs/cyclegan/mnist_fashion.py --workdir=/tmp/cyclegan_mf \
      --config.data.data_dir=$HOME/tensorflow_datasets
Smoke test (seconds): --config=configs/cyclegan/mnist_fashion.py:tiny

Deviations from the paper, for 2 CPU cores: 28x28 images resized to 32x32 (a multiple of 4, as the
generator needs); ngf = ndf = 16 (paper 64); batch 8 (paper 1); 6 residual blocks (the paper's
choice at <= 128 px); a 2-layer PatchGAN (34x34 receptive field, 6x6 logits); identity loss off
(lambda_identity 0: the domains share no colours or shapes to preserve, and the paper uses it only
for painting <-> photo); 10,000 steps (1.3 epochs), half constant, half decay. Target: no paper number
exists for this pair; expect the cycle L1 (cycle_a / cycle_b) to fall below 0.1 within a few thousand
steps, and digits mapped to clothes whose stroke layout they keep.
"""
import os

import ml_collections

from jaxgen.configs import base_config, load_config_file, parse_arg


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  h2z = os.path.join(os.path.dirname(os.path.abspath(__file__)), "horse2zebra.py")
  # The method's settings (and, with :tiny, the tiny sizes) from horse2zebra.py, not its TFDS data.
  c = load_config_file(h2z + (":tiny" if args.tiny else ""))
  c.data = base_config().data
  c.data.source = "tfds"
  c.data.image_size = 32
  c.data.channels = 1
  c.data.crop = "resize"
  c.data.streams.a = dict(name="mnist")
  c.data.streams.b = dict(name="fashion_mnist")
  if args.tiny:
    c.data.num_train_examples = 64
    return c
  c.model.gen_features = 16
  c.model.disc_features = 16
  c.model.num_blocks = 6
  c.model.disc_layers = 2
  c.cyclegan.lambda_identity = 0.0
  c.train.batch_size = 8
  c.train.num_steps = 10_000
  c.train.log_every = 100
  c.train.sample_every = 1000
  c.train.ckpt_every = 1000
  c.train.num_samples = 8
  c.eval.batch_size = 16
  c.eval.num_samples = 32
  return c
