r"""SimCLR (Chen et al. 2020, arXiv:2002.05709) pre-training on CIFAR-10, evaluated by kNN and a linear
probe on the frozen encoder.

The paper (appendix B.9, Table 8 / Figure B.7): ResNet-50 with the CIFAR stem (3x3 conv stride 1, no
max-pool), no Gaussian blur, colour strength 0.5, trained 1000 epochs reaches 94.0 % linear
evaluation accuracy on CIFAR-10 (batch 1024, temperature 0.5, LARS). The simclr repository's README
CIFAR-10 command, followed here: ResNet-18, batch 512, 1000 epochs, --learning_rate=1.0 with linear
scaling (peak lr 1.0 * 512 / 256 = 2.0), weight decay 1e-4, temperature 0.5, colour strength 0.5, no
blur; LARS (momentum 0.9, trust coefficient 1e-3, biases and BN excluded), 10 warm-up epochs then
cosine. ResNet-50 as the paper: `:depth=50`. Not yet measured here at full length.

ARG (`--config=configs/simclr/cifar10.py:ARG`): keywords depth (18), batch (512), epochs (1000),
lr (1.0), lr_scaling (linear | sqrt: SimCLR's 0.075 * sqrt(B) is lr=0.075,lr_scaling=sqrt), tiny.

Data: the CIFAR-10 JPEG folder, unpacked once next to the repository:
  mkdir -p ../data && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C ../data
Run:
  python -m jaxgen.main --config=configs/simclr/cifar10.py --workdir=/tmp/simclr --mode=train
  python -m jaxgen.main --config=configs/simclr/cifar10.py --workdir=/tmp/simclr --mode=eval
  python -m jaxgen.main --config=configs/simclr/cifar10.py --workdir=/tmp/simclr --mode=benchmark
Smoke test (seconds):
  python -m jaxgen.main --config=configs/simclr/cifar10.py:tiny --workdir=/tmp/simclr_tiny --mode=train
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg

CIFAR10_TRAIN = 50_000


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, depth=18, batch=512, epochs=1000, lr=1.0, lr_scaling="linear", tiny=False)
  c = base_config()
  c.method = "simclr"
  c.data.source = "folder"
  c.data.path = "../data/cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10            # labels are used by the evaluators only
  c.data.random_flip = False         # the method's augmentations flip

  c.model = ml_collections.ConfigDict(dict(depth=args.depth, width=64, stem="cifar", out_dim=128,
                                           proj_layers=2, dtype="float32", stages=()))
  c.simclr = ml_collections.ConfigDict(dict(temperature=0.5, strength=0.5, blur=False,
                                            resize="cubic", lr_scaling=args.lr_scaling))

  steps_per_epoch = CIFAR10_TRAIN // args.batch
  c.train.batch_size = args.batch
  c.train.num_steps = args.epochs * steps_per_epoch
  c.optim = ml_collections.ConfigDict(dict(
      name="lars", lr=args.lr,            # SimCLR's --learning_rate, scaled by simclr.lr_scaling
      momentum=0.9, weight_decay=1e-4, trust_coefficient=1e-3, exclude_bias_and_norm=True,
      schedule="cosine", warmup_steps=10 * steps_per_epoch, final_lr_frac=0.0))
  c.train.log_every = 100
  c.train.sample_every = 0            # draws no samples
  c.train.ckpt_every = 5 * steps_per_epoch
  c.train.eval_every = 50 * steps_per_epoch
  c.eval.num_samples = 0
  c.eval.metrics = ()
  c.eval.batch_size = 500
  c.eval.evaluators = ("knn", "linear_probe")
  c.eval.knn = ml_collections.ConfigDict(dict(train_split="train", num_train=-1, k=200,
                                              temperature=0.1))
  c.eval.linear_probe = ml_collections.ConfigDict(dict(train_split="train", num_train=-1, l2=1e-4,
                                                       max_iters=1000, tol=1e-6))
  if args.tiny:
    c.data.num_train_examples = 64
    c.model.update(dict(depth=18, width=4, out_dim=16, stages=(1, 1)))
    c.train.update(dict(batch_size=8, num_steps=4, log_every=2, ckpt_every=4, eval_every=0))
    c.optim.warmup_steps = 1
    c.eval.update(dict(batch_size=8, num_examples=16))
    c.eval.knn.update(dict(num_train=32, k=5))
    c.eval.linear_probe.update(dict(num_train=32, max_iters=50))
  return c
