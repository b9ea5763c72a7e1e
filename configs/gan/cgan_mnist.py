"""Conditional GAN on MNIST (Mirza & Osindero 2014): labels into both players.

Run:
  python -m jaxgen.main --config=configs/gan/cgan_mnist.py --workdir=/tmp/cgan --mode=train
  python -m jaxgen.main --config=configs/gan/cgan_mnist.py --workdir=/tmp/cgan --mode=sample --num_samples=100
    (labels cycle 0..9: each column of the 10-wide grid is one digit; .npz holds cond_label;
    --config.eval.labels='(7,)' draws only sevens, '(3, 8)' alternates threes and eights)
Projection discriminator (Miyato & Koyama 2018) instead of concatenation:
  --config=configs/gan/cgan_mnist.py:cond_d=projection
Smoke test (seconds on a CPU): --config=configs/gan/cgan_mnist.py:tiny

Paper (Sec. 4.1): G: z (100, uniform) -> 200 ReLU and y -> 1000 ReLU, joined -> 1200 ReLU -> 784
sigmoid; D: x -> maxout 240 x 5 and y -> maxout 50 x 5, joined -> maxout 240 x 4 -> sigmoid, dropout
0.5; SGD, batch 100, lr 0.1 decayed by 1/1.00004 per step to 1e-6, momentum 0.5 rising to 0.7.
Here the label is one-hot and concatenated with the inputs (a learned embedding in the first
layer, in place of the separate label branches): G [z, y] -> 1200 -> 1200 ReLU -> 784 tanh; D
[x, y] -> maxout 290 x 5 (240 + 50 units) -> maxout 240 x 5 -> logit. Optimiser: `:optim=sgd` is
the paper's (momentum held at 0.5; it diverged here within 20 steps, see vanilla_mnist.py), the
default is Adam 2e-4 / beta1 0.5. Measured (tests/test_gan_learning.py, small players, 1000 Adam
steps): a real-MNIST classifier reads the requested digit in 85 % of samples with the projection
D, but only at chance (10-15 % after 1000-2500 steps) with concatenation: projection is the
faster learner. At full width after 5000 steps (~5 min on a 2-core CPU; the classifier of
tests/test_gan_learning.py on 1000 samples): 65 % with concatenation (this config as it is) and
87.5 % with `:cond_d=projection`.
Target: Table 1, Parzen-window log-likelihood 132 +- 1.8 on MNIST test (not computed here); the
test suite checks instead that a classifier trained on real MNIST reads the requested digit from
the samples (tests/test_gan_learning.py).
"""
import os

import ml_collections

from jaxgen.configs import load_config_file, parse_arg


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, cond_d="concat", optim="adam")
  base = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vanilla_mnist.py")
  c = load_config_file(f"{base}:optim={args.optim}" + (",tiny" if args.tiny else ""))
  c.data.num_classes = 10
  c.gan.conditional = True
  c.gan.cond_d = args.cond_d
  if not args.tiny:
    c.model.gen_hidden = (1200, 1200)
    c.model.disc_hidden = (290, 240)
  if args.optim == "sgd":   # the cGAN paper decays 10x faster than the GAN paper
    c.optim.generator.decay_rate = c.optim.discriminator.decay_rate = 1 / 1.00004
  return c
