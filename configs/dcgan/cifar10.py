"""DCGAN on CIFAR-10 (Radford et al. 2016 architecture and hyper-parameters), 32x32 RGB.

Data: the CIFAR-10 JPEG folder. Unpack it once, next to the repository:
  mkdir -p ../data && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C ../data
which gives ../data/cifar10/{train,test}/<class>/NNNN.jpg; data.path is that `cifar10/` root
(override with --config.data.path=/abs/path/to/cifar10).

Run:
  python -m jaxgen.main --config=configs/dcgan/cifar10.py --workdir=/tmp/dcgan_cifar10 --mode=train
Smoke test (seconds on a CPU):
  python -m jaxgen.main --config=configs/dcgan/cifar10.py:tiny --workdir=/tmp/dcgan_tiny --mode=train

Targets: the DCGAN paper reports no CIFAR-10 generation score (it uses CIFAR-10 only to
evaluate D's features, 82.8% accuracy). Later work measures this architecture family at FID in the
30s to 40s on CIFAR-10; these JPEG images are lossy, so FID against their statistics is close to,
not equal to, numbers computed on the official binaries.
"""
import ml_collections

from jaxgen.configs import base_config


def get_config(arg=None) -> ml_collections.ConfigDict:
  c = base_config()
  c.method = "gan"

  c.data.source = "folder"
  c.data.path = "../data/cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 0              # unconditional: labels are not used
  c.data.random_flip = True

  c.model = ml_collections.ConfigDict()
  c.model.arch = "dcgan"
  c.model.z_dim = 100
  c.model.gen_features = 128          # G: 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x3
  c.model.disc_features = 128         # D: 16x16x128 -> 8x8x256 -> 4x4x512 -> logit
  c.model.dtype = "float32"

  c.gan = ml_collections.ConfigDict()
  c.gan.loss = "non_saturating"

  # Paper: Adam with lr 2e-4 and beta1 0.5 for both players, batch 128.
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=2e-4, b1=0.5, b2=0.999))
  c.optim.discriminator = ml_collections.ConfigDict(dict(name="adam", lr=2e-4, b1=0.5, b2=0.999))

  c.train.batch_size = 128
  c.train.num_steps = 100_000
  c.train.sample_every = 5000
  c.train.ckpt_every = 5000
  c.train.ema_decay = 0.999

  c.eval.metrics = ("fid", "is")
  c.eval.num_samples = 50_000

  if arg == "tiny":
    c.data.num_train_examples = 512
    c.model.gen_features = 8
    c.model.disc_features = 8
    c.train.batch_size = 16
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.sample_every = 10
    c.train.num_samples = 16
    c.train.ckpt_every = 10
    c.eval.metrics = ()
    c.eval.num_samples = 16
  return c
