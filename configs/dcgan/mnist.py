"""DCGAN on MNIST (Radford et al. 2016 architecture and hyper-parameters), 32x32 grey.

Run:
  python -m jaxgen.main --config=configs/dcgan/mnist.py --workdir=/tmp/dcgan_mnist --mode=train
Smoke test (seconds on a CPU):
  python -m jaxgen.main --config=configs/dcgan/mnist.py:tiny --workdir=/tmp/dcgan_tiny --mode=train

Data: TFDS "mnist", which must be prepared offline first (../shared/datasets/README.md); point
--config.data.data_dir at that TFDS data_dir. The 28x28 digits are resized to 32x32, a power of two,
as DCGAN's stride-2 stack needs.
Targets: the paper reports no MNIST number; expect recognisable digits after ~5k steps
(about 10 epochs) and a stable game (D accuracies well below 1, no collapse to a single mode).
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = base_config()
  c.method = "gan"

  c.data.source = "tfds"
  c.data.name = "mnist"
  c.data.image_size = 32
  c.data.channels = 1
  c.data.crop = "resize"
  c.data.num_classes = 0              # unconditional: labels are not used

  c.model = ml_collections.ConfigDict()
  c.model.arch = "dcgan"
  c.model.z_dim = 100
  c.model.gen_features = 128          # G: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x1
  c.model.disc_features = 128         # D: 16x16x128 -> 8x8x256 -> 4x4x512 -> logit
  c.model.dtype = "float32"

  c.gan = ml_collections.ConfigDict()
  c.gan.loss = "non_saturating"

  # Paper: Adam with lr 2e-4 and beta1 0.5 for both players, batch 128.
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=2e-4, b1=0.5, b2=0.999))
  c.optim.discriminator = ml_collections.ConfigDict(dict(name="adam", lr=2e-4, b1=0.5, b2=0.999))

  c.train.batch_size = 128
  c.train.num_steps = 10_000
  c.train.sample_every = 1000
  c.train.ema_decay = 0.999

  if args.tiny:
    c.data.num_train_examples = 512
    c.model.gen_features = 8
    c.model.disc_features = 8
    c.train.batch_size = 16
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.sample_every = 10
    c.train.num_samples = 16
    c.train.ckpt_every = 10
    c.eval.num_samples = 16
  return c
