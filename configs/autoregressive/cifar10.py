r"""Autoregressive models of CIFAR-10 in bits/dim: PixelCNN, Row LSTM, Diagonal BiLSTM, Gated PixelCNN,
PixelCNN++.

Run (ARCH = pixelcnn | row_lstm | diagonal_bilstm | gated_pixelcnn | pixelcnnpp; default pixelcnnpp):
  tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C /tmp/cifar10
  python -m jaxgen.main --config=configs/autoregressive/cifar10.py:arch=pixelcnnpp --workdir=/tmp/pp --mode=train
  python -m jaxgen.main --config=configs/autoregressive/cifar10.py:arch=pixelcnnpp --workdir=/tmp/pp --mode=eval
Smoke test: --config=configs/autoregressive/cifar10.py:tiny,arch=pixelcnn

Targets (test NLL in bits/dim): PixelCNN 3.14, Row LSTM 3.07, Diagonal BiLSTM 3.00 (PixelRNN paper
Table 5; 15 PixelCNN layers, 12 LSTM layers, h=128, a 256-way softmax per colour channel in R -> G ->
B order); Gated PixelCNN 3.03 (van den Oord et al. 2016b, Table 1); PixelCNN++ 2.92 (Salimans et
al. 2017, Table 1; discretized logistic mixture of 10 components, 5 gated ResNet blocks per
resolution, 160 filters, weight normalisation, dropout 0.5, Adam(b1=0.95, b2=0.9995) lr 1e-3 decayed by 0.999995 per
step and Polyak averaging 0.9995 as the reference code, batch 64 as the Flax example). Data: the CIFAR-10 JPEG folder from the shared
datasets (quality ~75 JPEGs, so bits/dim are not comparable to the papers' lossless images to the
second decimal; use data.source="tfds", name="cifar10" for the lossless set). Full-size bits/dim
NOT YET MEASURED (a CPU learning check: tests/test_autoregressive.py).

Speed, 2-core CPU, --mode=benchmark (config.benchmark.sample_batch=4 times the sampler):
  Train step at batch 16, fp32 (--config.benchmark.batch_size=16): PixelCNN (h 128, 15 blocks)
    2.10 s, beside python ../shared/bench/peer_torch_pixelcnn.py --h 128 --blocks 15 --batch 16
    --device cpu in the same command: 2.29 s (1.09x; masked convolutions run only their live
    rows of taps). Gated PixelCNN (15 layers) 3.37 s, Row LSTM (12 layers) 5.66 s, Diagonal
    BiLSTM (12 layers) 10.5 s.
  PixelCNN++ sampling, 4 images: this config (53.7M params, cached sampler) 13.2 s; with
    --config.model.nr_resnet=1 --config.model.nr_filters=32: cached 0.37 s, naive
    (--config.sample.cached=False) 19.6 s, 53x.
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg

LAYER = {"row_lstm": "row_lstm", "diagonal_bilstm": "diagonal_bilstm"}


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, arch="pixelcnnpp")
  c = base_config()
  c.method = "autoregressive"
  c.data.source = "folder"
  c.data.path = "/tmp/cifar10/cifar10"
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10
  c.data.binarize = ""

  c.model = ml_collections.ConfigDict()
  c.model.arch = "pixelrnn" if args.arch in LAYER else args.arch
  c.model.layer = LAYER.get(args.arch, "row_lstm")
  c.model.likelihood = "logistic_mixture" if args.arch == "pixelcnnpp" else "categorical"
  c.model.hidden = 128
  c.model.num_blocks = 15
  c.model.num_layers = 12 if args.arch in LAYER else 15
  c.model.conditional = False
  c.model.nr_resnet = 5
  c.model.nr_filters = 160
  c.model.nr_logistic_mix = 10
  c.model.dropout = 0.5
  # Weight normalisation with data-dependent init from the first batch (the reference's), PixelCNN++ only.
  c.model.weight_norm = args.arch == "pixelcnnpp"
  c.model.dtype = "float32"

  c.optim = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, b1=0.95, b2=0.9995,
                                           schedule="exponential", decay_rate=0.999995))
  c.train.batch_size = 64
  c.train.num_steps = 500_000
  c.train.ema_decay = 0.9995
  c.train.log_every = 200
  c.train.sample_every = 20_000
  c.train.num_samples = 16
  c.train.ckpt_every = 5000
  c.train.eval_every = 50_000
  c.eval.batch_size = 64
  c.eval.num_samples = 16
  c.sample = ml_collections.ConfigDict(dict(progress=True))
  c.sample.cached = True                # pixelcnn / gated_pixelcnn / pixelcnnpp: cached sampler (False: naive)
  if args.tiny:
    c.data.source = "shapes"
    c.data.path = ""
    c.data.image_size = 8
    c.data.num_train_examples = 256
    c.model.update(dict(hidden=4, num_blocks=1, num_layers=2, nr_resnet=1, nr_filters=8,
                        nr_logistic_mix=2, dropout=0.0))
    c.train.update(dict(batch_size=16, num_steps=10, log_every=5, sample_every=10, num_samples=4,
                        ckpt_every=10, eval_every=0, ema_decay=0.9))
    c.eval.update(dict(batch_size=16, num_examples=32, num_samples=4))
  return c
