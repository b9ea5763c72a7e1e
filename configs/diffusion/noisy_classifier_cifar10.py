r"""Noisy classifier p(y | x_t, t) on CIFAR-10 for classifier guidance (Dhariwal & Nichol 2021,
arXiv:2105.05233, section 4 / Algorithm 1).

Train the classifier, then sample the class-conditional-by-guidance DDPM with it:
  python -m jaxgen.main --config=configs/diffusion/noisy_classifier_cifar10.py --workdir=/tmp/clf --mode=train
  python -m jaxgen.main --config=configs/diffusion/ddpm_cifar10.py --workdir=/tmp/ddpm --mode=eval \
      --config.pretrained.classifier.workdir=/tmp/clf --config.sample.classifier_scale=1.0
(The classifier's architecture and forward process come from the config saved with its checkpoints;
its params are loaded onto the mesh as a frozen part, jaxgen.pretrained.)
Smoke test: --config=configs/diffusion/noisy_classifier_cifar10.py:tiny

The forward process must be the diffusion model's (T = 1000 linear betas here, as ddpm_cifar10).
The paper trains its classifiers on ImageNet with the downsampling half of its U-Net, AdamW lr 3e-4
(lr 6e-4 for some), batch 256, random crops, uniform t; it reports no CIFAR-10 number. Here: the
DDPM U-Net's encoder half without attention (jaxgen/models/noisy_classifier.py), AdamW 3e-4, batch
128, flips, 300k steps. Target: no published one; a sanity target is test accuracy (eval "accuracy",
at a uniform random t) well above 10 % chance, and guided samples whose FID-per-class improves over
unguided ones as scale grows (the paper's Table 4 trend on ImageNet). NOT YET MEASURED.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.diffusion.defaults import diffusion_base_config, make_tiny


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = diffusion_base_config()
  c.method = "noisy_classifier"
  c.data.source = "folder"
  c.data.path = "/tmp/cifar10/cifar10"      # unpack as in configs/diffusion/ddpm_cifar10.py
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10
  c.data.random_flip = True

  c.model = ml_collections.ConfigDict()
  c.model.ch = 128
  c.model.ch_mult = (1, 2, 2, 2)
  c.model.num_res_blocks = 2
  c.model.dropout = 0.0
  c.model.num_groups = 32
  c.model.dtype = "float32"

  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adamw"
  c.optim.lr = 3e-4
  c.optim.weight_decay = 0.05
  c.optim.warmup_steps = 1000

  c.train.batch_size = 128
  c.train.num_steps = 300_000
  c.train.sample_every = 0                  # a classifier draws no samples: no grids, ...
  c.eval.num_samples = 0                    # ... no eval samples ...
  c.train.ema_decay = 0.9999
  c.train.eval_every = 10_000
  c.eval.metrics = ()
  if args.tiny:
    make_tiny(c)
    c.model.attn_resolutions = ()
    c.train.sample_every = 0
    c.eval.num_samples = 0
  return c
