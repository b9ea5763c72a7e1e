"""SRResNet (Ledig et al. 2017, arXiv:1609.04802): x4 super-resolution trained with pixel MSE alone
(the paper's SRResNet-MSE), and the generator SRGAN starts from (configs/srgan/srgan.py).

The paper (Sec. 3.2): 350k ImageNet images, random 96x96 HR crops (16 of distinct images per batch),
LR made by bicubic x4 downsampling, LR scaled to [0, 1] and HR to [-1, 1]; Adam (beta1 0.9), lr 1e-4,
1e6 update iterations; 16 residual blocks of 64 features. Its targets (Table 2, x4, PSNR dB / SSIM on
the Y channel with a 4-pixel border removed): Set5 32.05 / 0.9019, Set14 28.49 / 0.8184, BSD100
27.58 / 0.7620, against bicubic 28.43 / 0.8211, 25.99 / 0.7486, 25.94 / 0.6935. `--mode eval` reports
the same measures on the eval split, the model's and bicubic's side by side (the `psnr_ssim`
evaluator).

Measured here (2-core CPU, cifar10 below with a small model: --config.model.features=16
--config.model.num_blocks=2 --config.optim.generator.lr=4e-3 --config.optim.generator.schedule=linear
--config.train.num_steps=3000, about 4 min): on 1000 CIFAR-10 test images (32x32 HR, 8x8 LR) Y-PSNR
23.20 dB / SSIM 0.658 / LPIPS 0.310 against bicubic's 22.23 / 0.578 / 0.319.

ARG (`--config=configs/srgan/srresnet.py:ARG`): the dataset first, then keywords, e.g.
`imagenet`, `folder,path=/data/div2k`, `tiny`:
  cifar10 (default)  CPU-sized: the CIFAR-10 JPEG folder, whole 32x32 images as HR (random flips),
                     8x8 LR. Unpack it once next to the repository:
                       mkdir -p ../data && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C ../data
  imagenet           the paper's setting: TFDS imagenet2012 (prepared offline, --config.data.data_dir),
                     images centre-cropped and resized to 256, random 96x96 crops, 1e6 steps.
  folder             the paper's setting on an image folder path=ROOT (ROOT/{train,test}/<any>/*.png,
                     e.g. DIV2K's HR images, or ImageNet unpacked), resized to 256, random 96 crops.
The pipeline resizes before cropping (data.image_size, then data.random_crop), which the paper did
not do: with large photos prefer a folder of images pre-resized to about 256-512 pixels.

Run:
  python -m jaxgen.main --config=configs/srgan/srresnet.py --workdir=/tmp/srresnet --mode=train
  python -m jaxgen.main --config=configs/srgan/srresnet.py --workdir=/tmp/srresnet --mode=eval
  python -m jaxgen.main --config=configs/srgan/srresnet.py --workdir=/tmp/srresnet --mode=sample --num_samples=16
Smoke test (seconds):
  python -m jaxgen.main --config=configs/srgan/srresnet.py:tiny --workdir=/tmp/srresnet_tiny --mode=train
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg
from jaxgen.pretrained import part_defaults

DATASETS = ("cifar10", "imagenet", "folder")


def set_dataset(c: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> None:
  """The data section for args.dataset (shared with configs/srgan/srgan.py)."""
  from jaxgen.errors import ConfigError  # pylint: disable=g-import-not-at-top
  if args.dataset not in DATASETS:
    raise ConfigError(f"configs/srgan: dataset {args.dataset!r} is unknown; use one of {DATASETS}.")
  c.data.channels = 3
  c.data.crop = "center"
  c.data.random_flip = True
  c.data.degrade.kind = "bicubic"
  c.data.degrade.factor = 4
  if args.dataset == "cifar10":
    c.data.source = "folder"
    c.data.path = args.path or "../data/cifar10"
    c.data.image_size = 32
    c.data.random_crop = 0          # whole images: 32x32 HR, 8x8 LR
  else:
    if args.dataset == "imagenet":
      c.data.source = "tfds"
      c.data.name = "imagenet2012"
      c.data.eval_split = "validation"
    else:
      c.data.source = "folder"
      c.data.path = args.path
    c.data.image_size = 256
    c.data.random_crop = 96         # the paper's 96x96 HR crops (24x24 LR)


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, positional=("dataset",), dataset="cifar10", path="", tiny=False)
  c = base_config()
  c.method = "srgan"
  set_dataset(c, args)

  c.model = ml_collections.ConfigDict(dict(features=64, num_blocks=16, disc_features=64,
                                           disc_dense=1024, dtype="float32"))
  c.srgan = ml_collections.ConfigDict(dict(content="mse", vgg_layer="relu5_3",
                                           vgg_scale=1.0 / 12.75 ** 2, adversarial_weight=0.0,
                                           loss="non_saturating"))
  # Declared empty so that the command line can fill them (e.g. content='vgg' for SRResNet-VGG54
  # needs --config.pretrained.vgg.file=fetch --config.pretrained.vgg.converter=vgg16).
  c.pretrained.vgg = part_defaults()
  c.pretrained.generator = part_defaults()

  c.optim = ml_collections.ConfigDict()
  # Keys spelled out so that the command line can override them (config_flags adds none).
  c.optim.generator = ml_collections.ConfigDict(dict(name="adam", lr=1e-4, b1=0.9, b2=0.999,
                                                     schedule="constant", final_lr_frac=0.0))

  c.train.batch_size = 16
  c.train.num_steps = 1_000_000
  c.train.log_every = 100
  c.train.sample_every = 10_000
  c.train.ckpt_every = 10_000
  c.train.num_samples = 16
  c.eval.batch_size = 64
  c.eval.num_samples = 16
  c.eval.evaluators = ("psnr_ssim",)
  c.eval.lpips = True                 # LPIPS (VGG, v0.1) beside PSNR / SSIM: perceptual distance
  if args.dataset == "cifar10":
    # CPU-sized: about 0.4 s a step (batch 16, the paper's 64 features and 16 blocks) on an idle
    # 2-core CPU, so 20k steps take about 2 hours.
    c.train.num_steps = 20_000
    c.train.sample_every = 2000
    c.train.ckpt_every = 2000
    c.eval.num_examples = 1000

  if args.tiny:
    c.data.num_train_examples = 64
    c.model.update(dict(features=8, num_blocks=2, disc_features=8, disc_dense=16))
    c.train.update(dict(batch_size=4, num_steps=4, log_every=2, sample_every=4, ckpt_every=4,
                        num_samples=4))
    c.eval.update(dict(batch_size=4, num_examples=8, num_samples=4, lpips=False))
  return c
