"""SN-GAN (Miyato et al. 2018) on CIFAR-10: the standard CNN (Table 3) with spectral normalisation
of every D weight and the hinge loss.

Data: the CIFAR-10 JPEG folder. Unpack it once, next to the repository:
  mkdir -p ../data && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C ../data
(override with --config.data.path=/abs/path/to/cifar10).

Run:
  python -m jaxgen.main --config=configs/gan/sngan_cifar10.py --workdir=/tmp/sngan --mode=train
  python -m jaxgen.main --config=configs/gan/sngan_cifar10.py --workdir=/tmp/sngan --mode=eval
    (FID and KID of 50k samples against the training set's statistics)
Smoke test (seconds on a CPU): --config=configs/gan/sngan_cifar10.py:tiny

Target: Table 2, standard CNN, SN-GANs: Inception score 7.42 +- 0.08, FID 29.3 (50k samples vs the
training set). These JPEG images are lossy, so FID against their statistics is close to, not equal
to, numbers on the official binaries. IS needs the Inception weights with the 1008-way classifier
(python -m jaxgen.metrics convert; then add "is" to eval.metrics).
Hyper-parameters: z (128) ~ N(0, I); batch 64; Adam lr 2e-4, beta1 0.5, beta2 0.999 with one D
update per G update (setting C of Table 1); 100k generator updates; one power iteration per
forward pass, u kept in state.model_state.
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg
from jaxgen.methods.gan import gan_defaults


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = base_config()
  c.method = "gan"

  c.data.source = "folder"
  c.data.path = "../data/cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.crop = "center"
  c.data.random_flip = False
  c.data.num_classes = 0

  c.model = ml_collections.ConfigDict()
  c.model.arch = "sngan"
  c.model.z_dim = 128
  c.model.z_prior = "normal"
  c.model.gen_features = 512          # G's Mg x Mg x 512 base, halved by each deconvolution
  c.model.disc_features = 64          # D: 64, 64, 128, 128, 256, 256, 512
  c.model.spectral_norm = True
  c.model.dtype = "float32"

  c.gan = gan_defaults(loss="hinge", d_steps=1)

  adam = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999)
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(adam))
  c.optim.discriminator = ml_collections.ConfigDict(dict(adam))

  c.train.batch_size = 64 * c.gan.d_steps
  c.train.num_steps = 100_000
  c.train.sample_every = 5000
  c.train.ckpt_every = 5000
  c.eval.metrics = ("fid", "kid")
  c.eval.fid_num_samples = 50_000
  c.eval.reference_split = "train"

  if args.tiny:
    c.data.num_train_examples = 256
    c.model.gen_features = 32
    c.model.disc_features = 8
    c.train.batch_size = 16 * c.gan.d_steps
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.sample_every = 10
    c.train.num_samples = 16
    c.train.ckpt_every = 10
    c.eval.num_samples = 16
    c.eval.metrics = ()
  return c
