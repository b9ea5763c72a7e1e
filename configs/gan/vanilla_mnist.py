"""The original GAN on MNIST (Goodfellow et al. 2014): MLP players, k D steps per G step.

Run (the paper recommends the non-saturating G loss in practice; `loss=minimax` is Eq. 1's game):
  python -m jaxgen.main --config=configs/gan/vanilla_mnist.py --workdir=/tmp/gan_mnist --mode=train
  python -m jaxgen.main --config=configs/gan/vanilla_mnist.py:loss=minimax --workdir=/tmp/gan_mm --mode=train
  python -m jaxgen.main --config=configs/gan/vanilla_mnist.py --workdir=/tmp/gan_mnist --mode=sample
Smoke test (seconds on a CPU): --config=configs/gan/vanilla_mnist.py:tiny (also `:tiny,loss=minimax`).
Arguments: loss (non_saturating | minimax | any LOSSES name), d_steps (the paper's k; it used 1),
optim (adam: Adam 2e-4 / beta1 0.5 for both players, the default; sgd: the paper's schedule below).
The paper's SGD (lr 0.1) diverged here within 20 steps (inf loss) with these players' LeCun-normal
initialisation (pylearn2 drew D's weights from U(-0.005, 0.005)), so the default is Adam; with it,
tests/test_gan_learning.py measures the losses and samples moving.

Paper (the released pylearn2 mnist.yaml): G z (100, uniform) -> 1200 ReLU -> 1200 ReLU -> 784
sigmoid (tanh here: images in [-1, 1]); D maxout 240 x 5 pieces -> maxout 240 x 5 -> sigmoid, dropout
0.2 on D's input and 0.5 on its hidden units; SGD, batch 100, lr 0.1 decayed by 1/1.000004 per step
(to a floor of 1e-6, not modelled here), momentum 0.5 rising to 0.7 (held at 0.5 here: jaxgen.optim
has no momentum schedule). z ~ U(-1, 1) (the paper's U(-sqrt 3, sqrt 3) up to a scale that G's
first layer absorbs).
Target: Table 1, Gaussian Parzen-window log-likelihood of MNIST test digits 225 +- 2 (a metric this
codebase does not compute; compare sample grids, and D / G losses near log 4 / log 2 when the game
is balanced).

Data: TFDS "mnist", prepared offline first (../shared/datasets/README.md); point
--config.data.data_dir at that TFDS data_dir.
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg
from jaxgen.errors import ConfigError
from jaxgen.methods.gan import gan_defaults


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, loss="non_saturating", d_steps=1, optim="adam")
  c = base_config()
  c.method = "gan"

  c.data.source = "tfds"
  c.data.name = "mnist"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.crop = "resize"
  c.data.num_classes = 0

  c.model = ml_collections.ConfigDict()
  c.model.arch = "mlp"
  c.model.z_dim = 100
  c.model.z_prior = "uniform"
  c.model.gen_hidden = (1200, 1200)
  c.model.disc_hidden = (240, 240)
  c.model.maxout_pieces = 5
  c.model.input_dropout = 0.2
  c.model.hidden_dropout = 0.5
  c.model.spectral_norm = False
  c.model.dtype = "float32"

  c.gan = gan_defaults(loss=args.loss, d_steps=args.d_steps)

  if args.optim not in ("adam", "sgd"):
    raise ConfigError(f"config arg optim={args.optim!r}; use 'adam' (default) or 'sgd' (the paper's).")
  sgd = dict(name="sgd", lr=0.1, momentum=0.5, schedule="exponential", decay_rate=1 / 1.000004)
  adam = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999)
  c.optim = ml_collections.ConfigDict()
  c.optim.generator = ml_collections.ConfigDict(dict(sgd if args.optim == "sgd" else adam))
  c.optim.discriminator = ml_collections.ConfigDict(dict(sgd if args.optim == "sgd" else adam))

  c.train.batch_size = 100 * args.d_steps   # each D step takes its own 100 rows
  c.train.num_steps = 100_000
  c.train.sample_every = 5000
  c.train.num_samples = 100
  c.eval.num_samples = 100

  if args.tiny:
    c.data.num_train_examples = 512
    c.model.gen_hidden = (32,)
    c.model.disc_hidden = (16,)
    c.model.maxout_pieces = 2
    c.train.batch_size = 16 * args.d_steps
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.sample_every = 10
    c.train.num_samples = 16
    c.train.ckpt_every = 10
    c.eval.num_samples = 16
  return c
