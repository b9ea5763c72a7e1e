"""InfoGAN (Chen et al. 2016) on MNIST: one 10-way categorical and two U(-1, 1) continuous codes.

Run:
  python -m jaxgen.main --config=configs/gan/infogan_mnist.py --workdir=/tmp/infogan --mode=train
  python -m jaxgen.main --config=configs/gan/infogan_mnist.py --workdir=/tmp/infogan --mode=sample --num_samples=100
    (the latent-traversal grid: rows vary the categorical code, columns continuous code 0 over
    [-1, 1], one z for the whole 10 x 10 grid; --config.gan.info.traversal_code=1 for the other
    code, --config.gan.info.traversal_range=2 to extrapolate as the paper's Fig. 2)
Smoke test (seconds on a CPU): --config=configs/gan/infogan_mnist.py:tiny
For FID or other sample statistics use random codes: --config.gan.info.traversal=0.

Paper (Appendix C.1, Table 1, and the reference run_mnist_exp.py): 62 noise variables (uniform),
c1 ~ Cat(K = 10), c2, c3 ~ U(-1, 1); G FC 1024 BN ReLU -> FC 7x7x128 BN ReLU -> 4x4 s2 deconv 64
BN ReLU -> 4x4 s2 deconv 1; D 4x4 s2 conv 64 lReLU -> 4x4 s2 conv 128 BN lReLU -> FC 1024 BN lReLU
-> FC 1, Q on D's trunk: FC 128 BN lReLU -> FC (10 logits, 2 means; unit-variance Gaussians as the
reference code's fixed std); lambda = 1; Adam, lr 2e-4 for D and 1e-3 for G, beta1 0.5; batch 128,
50 epochs of 100 updates (5000 steps).
Target: matching c1's values to digit classes gives about 5% test error (Sec. 7.1); c2, c3
capture rotation and width. The test suite checks Q's accuracy on the categorical code of samples.
Measured (this config for 1500 steps, 15 min on a 2-core CPU): a classifier trained on real MNIST
(tests/test_gan_learning.py's) maps 1000 traversal samples' categorical codes to digits with 93.2 %
majority-mapping accuracy (the paper's 5 % error is 95 %); 9 of the 10 digits have a code of their
own (4 and 9 share two codes), and continuous code 0 varies the stroke width.
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg
from jaxgen.methods.gan import gan_defaults


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False)
  c = base_config()
  c.method = "gan"

  c.data.source = "tfds"
  c.data.name = "mnist"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.crop = "resize"
  c.data.num_classes = 0              # unsupervised: labels are not read

  c.model = ml_collections.ConfigDict()
  c.model.arch = "infogan"
  c.model.z_dim = 62
  c.model.z_prior = "uniform"
  c.model.hidden = 1024
  c.model.gen_features = 128          # channels of G's 7x7 map
  c.model.disc_features = 64          # channels of D's first convolution
  c.model.spectral_norm = False
  c.model.dtype = "float32"

  c.gan = gan_defaults(loss="non_saturating", info=dict(
      categorical=10, continuous=2, cat_weight=1.0, cont_weight=1.0, fixed_std=True, q_hidden=128,
      traversal=10, traversal_code=0, traversal_range=1.0))

  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, b1=0.5, b2=0.999))
  c.optim.discriminator = ml_collections.ConfigDict(dict(name="adam", lr=2e-4, b1=0.5, b2=0.999))

  c.train.batch_size = 128
  c.train.num_steps = 5000
  c.train.sample_every = 500
  c.train.num_samples = 100
  c.eval.num_samples = 100

  if args.tiny:
    c.data.num_train_examples = 512
    c.model.hidden = 32
    c.model.gen_features = 8
    c.model.disc_features = 8
    c.gan.info.q_hidden = 8
    c.train.batch_size = 16
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.sample_every = 10
    c.train.ckpt_every = 10
  return c
