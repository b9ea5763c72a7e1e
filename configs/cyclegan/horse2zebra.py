"""CycleGAN on TFDS cycle_gan/horse2zebra (Zhu et al. 2017, arXiv:1703.10593), the paper's setup.

Run (the dataset must be prepared in a TFDS data_dir first; it is not downloaded):
  python -m jaxgen.main --config=configs/cyclegan/horse2zebra.py --workdir=/runs/h2z \
      --config.data.data_dir=~/tensorflow_datasets
Another cycle_gan pair, or 128x128 training (6 residual blocks):
  python -m jaxgen.main --config=configs/cyclegan/horse2zebra.py:pair=monet2photo --workdir=/runs/m2p
  python -m jaxgen.main --config=configs/cyclegan/horse2zebra.py:size=128 --workdir=/runs/h2z128
Translate the test images both ways (grids of input, translation, reconstruction; .npz beside):
  python -m jaxgen.main --config=configs/cyclegan/horse2zebra.py --workdir=/runs/h2z --mode=sample
Smoke test (seconds; still needs the prepared dataset): `:tiny`. Timing beside the PyTorch peer:
  python -m jaxgen.main --config=configs/cyclegan/horse2zebra.py:size=128 --mode=benchmark \
      --config.train.batch_size=1 --workdir=/tmp/b && \
      python ../shared/bench/peer_torch_cyclegan.py --size 128 --blocks 6 --batch 1
  measured on a 2-core AVX2 EPYC: 2.72 and 3.13 s per step vs the peer's 2.80 and 3.87 s in two
  pairs (1.03x, 1.23x); on a quiet 2-core AVX-512 EPYC: 2.19-2.30 s vs 2.21-2.24 s (0.97-1.01x;
  2.39 s, 0.88x, before the 7x7 64 -> 3 output layer and the 3-channel input layer's input
  gradient left XLA:CPU's loop-emitted convolutions, see jaxgen.nn.conv.conv_few_outputs).

The paper (Sec. 4, Appendix 7) and the reference code's defaults: ResNet generators with 9 residual
blocks at 256x256 (6 at 128x128), ngf = ndf = 64, 70x70 PatchGAN, instance norm, LSGAN loss,
lambda = 10 for the cycle loss and 0.5 lambda for the identity loss (used for painting <-> photo in the
paper and on by default in the code), a history buffer of 50 images, Adam lr 2e-4, beta1 0.5, batch 1,
200 epochs: 100 at the constant lr, then 100 of linear decay to 0 (here per step; the reference steps
once per epoch, ending at lr / 101). Images are loaded at 286x286 and randomly cropped to 256x256 and
flipped (the reference's resize_and_crop); test images are centre-cropped. One reference epoch is
max(|trainA|, |trainB|) steps (unaligned dataset); each stream here cycles through its own domain in
its own order. One deviation by default: batch 2 (`:batch=1` is the paper's, on one device), so that
the config also runs split over 2 devices as the test suite's simulated mesh does; the losses are
per-example means, so a step is the paper's update averaged over 2 image pairs, and the 200 epochs
take half the steps.

Target: the paper evaluates horse <-> zebra qualitatively (Fig. 13) and reports FCN scores / AMT only
for Cityscapes and maps (Table 1-3: on maps -> aerial, 26.8% of AMT judges fooled; Cityscapes labels
-> photo, FCN per-pixel accuracy 0.52). No number is reproduced on CPU here.
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg
from jaxgen.errors import ConfigError

# Train split sizes (trainA, trainB) of TFDS cycle_gan/<pair>, as listed in its catalog;
# horse2zebra's 1067 + 1334 (+ 120 + 140 test images) = 3061 is the zip's count. Override with
# `:epoch_size=N` if a catalog version differs.
TRAIN_SIZES = {
    "horse2zebra": (1067, 1334), "apple2orange": (995, 1019), "summer2winter_yosemite": (1231, 962),
    "monet2photo": (1072, 6287), "cezanne2photo": (525, 6287), "ukiyoe2photo": (562, 6287),
    "vangogh2photo": (400, 6287), "maps": (1096, 1096), "cityscapes": (2975, 2975),
    "facades": (400, 400), "iphone2dslr_flower": (1812, 3325),
}


def cyclegan_base() -> ml_collections.ConfigDict:
  """The paper's method settings, shared by every CycleGAN config."""
  c = base_config()
  c.method = "cyclegan"
  c.model = ml_collections.ConfigDict()
  c.model.gen_features = 64         # ngf: c7s1-64, d128, d256, R256 x n, u128, u64, c7s1-3
  c.model.disc_features = 64        # ndf: C64-C128-C256-C512
  c.model.num_blocks = -1           # -1 = the paper's: 6 at <= 128 px, 9 above
  c.model.disc_layers = 3           # 3 = the 70x70 PatchGAN
  c.model.dtype = "float32"
  c.cyclegan = ml_collections.ConfigDict()
  c.cyclegan.loss = "lsgan"
  c.cyclegan.lambda_cycle = 10.0
  c.cyclegan.lambda_identity = 0.5  # times lambda_cycle
  c.cyclegan.pool_size = 50
  # Adam(2e-4, 0.5, 0.999) for the generator pair and for the discriminator pair; constant for the
  # first half of the steps, then linear to 0.
  adam = dict(name="adam", lr=2e-4, b1=0.5, b2=0.999, schedule="linear", hold_frac=0.5,
              final_lr_frac=0.0)
  c.optim = ml_collections.ConfigDict(dict(generator=dict(adam), discriminator=dict(adam)))
  c.train.batch_size = 1
  c.eval.batch_size = 8
  c.eval.num_samples = 16
  c.train.num_samples = 8
  return c


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, pair="horse2zebra", size=256, epochs=200, epoch_size=0, batch=2, tiny=False)
  if args.pair not in TRAIN_SIZES:
    raise ConfigError(f"config arg pair={args.pair!r} is not a TFDS cycle_gan pair; use one of "
                      f"{sorted(TRAIN_SIZES)}.")
  c = cyclegan_base()
  c.data.source = "tfds"
  c.data.name = f"cycle_gan/{args.pair}"
  c.data.channels = 3
  c.data.crop = "resize"
  c.data.image_size = round(args.size * 286 / 256)   # load 286, crop 256 (the reference)
  c.data.random_crop = args.size
  c.data.random_flip = True
  c.data.num_classes = 0
  c.data.streams.a = dict(train_split="trainA", eval_split="testA")
  c.data.streams.b = dict(train_split="trainB", eval_split="testB")

  c.train.batch_size = args.batch
  epoch = args.epoch_size or max(TRAIN_SIZES[args.pair])
  c.train.num_steps = args.epochs * epoch // c.train.batch_size
  c.train.log_every = 100
  c.train.sample_every = 5 * epoch
  c.train.ckpt_every = 5 * epoch
  if args.tiny:   # also the tiny variant of the CPU configs (cifar10_cat_dog, mnist_fashion)
    c.data.image_size = 36
    c.data.random_crop = 32
    c.data.num_train_examples = 16
    c.model.gen_features = 8
    c.model.disc_features = 8
    c.model.num_blocks = 2
    c.cyclegan.pool_size = 4
    c.train.batch_size = 2
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.sample_every = 6
    c.train.ckpt_every = 3
    c.train.num_samples = 4
    c.eval.batch_size = 4
    c.eval.num_samples = 4
  return c
