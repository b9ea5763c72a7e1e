"""CycleGAN between two real CPU-sized domains: CIFAR-10 cats <-> dogs (32x32 RGB), the paper's method
(configs/cyclegan/horse2zebra.py: losses, lambdas, history buffer of 50, Adam 2e-4 / 0.5, constant
then linear decay) at a CPU width.

Data: the CIFAR-10 JPEG folder, two class subsets as the two domains, each stream in its own order
(data.streams.a = cats, label 3; data.streams.b = dogs, label 5; 5,000 train and 1,000 test images
each). Unpack it once, next to the repository:
  mkdir -p ../data && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C ../data
Run:
  python -m jaxgen.main --config=configs/cyclegan/cifar10_cat_dog.py --workdir=/tmp/cyclegan_cd
  python -m jaxgen.main --config=configs/cyclegan/cifar10_cat_dog.py --workdir=/tmp/cyclegan_cd --mode=sample
Smoke test (seconds): --config=configs/cyclegan/cifar10_cat_dog.py:tiny

Deviations from the paper, for 2 CPU cores: ngf = ndf = 32 (paper 64); batch 4 (paper 1);
6 residual blocks (the paper's choice at <= 128 px); a 2-layer PatchGAN (C32-C64-C128 then the logit
conv: 34x34 receptive field, 6x6 logits on 32x32 images; the paper's 3-layer 70x70 PatchGAN would see
the whole image at this size, leaving 2x2 logits); 16 epochs (20,000 steps), half constant, half
decay. Target: no paper number exists for this pair; expect the cycle L1 (metrics cycle_a / cycle_b)
to fall well below 0.1 and translations that keep the pose and background of the input.
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
  c.data.source = "folder"
  c.data.path = "../data/cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.crop = "center"
  c.data.random_flip = True
  c.data.streams.a = dict(classes=(3,))   # cat
  c.data.streams.b = dict(classes=(5,))   # dog
  if args.tiny:
    c.data.num_train_examples = 16
    return c
  c.model.gen_features = 32
  c.model.disc_features = 32
  c.model.num_blocks = 6
  c.model.disc_layers = 2
  c.train.batch_size = 4
  c.train.num_steps = 20_000
  c.train.log_every = 100
  c.train.sample_every = 2000
  c.train.ckpt_every = 2000
  c.train.num_samples = 8
  c.eval.batch_size = 16
  c.eval.num_samples = 32
  return c
