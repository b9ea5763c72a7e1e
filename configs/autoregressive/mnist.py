r"""Autoregressive models of binarized MNIST: PixelCNN, Row LSTM, Diagonal BiLSTM, Gated PixelCNN.

Run (ARCH = pixelcnn | row_lstm | diagonal_bilstm | gated_pixelcnn; default diagonal_bilstm):
  python -m jaxgen.main --config=configs/autoregressive/mnist.py:arch=pixelcnn --workdir=/tmp/ar --mode=train
  python -m jaxgen.main --config=configs/autoregressive/mnist.py:arch=pixelcnn --workdir=/tmp/ar --mode=eval
Smoke test: --config=configs/autoregressive/mnist.py:tiny,arch=row_lstm

Protocol (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", Table 4): exact test NLL in
nats of binarized MNIST. Targets: PixelCNN 81.30, Row LSTM 80.54, Diagonal BiLSTM (7 layers, h=16)
79.20 nats. The paper used the fixed stochastic binarization of Salakhutdinov & Murray (2008); here
training binarizes afresh every step (data.binarize="dynamic") and evaluation scores each test image
under one fixed binarization (a key derived from its pixels), the same for every run and family
(set data.binarize="static" to train on fixed binarizations too). Table 4 gives the architecture only
for the Diagonal BiLSTM (7 layers of h=16); the other models use the same depth and width here.
Sigmoid output per pixel (the paper's binary MNIST head). NOT YET MEASURED at full length.
"""
import ml_collections

from jaxgen.configs import base_config, parse_arg

LAYER = {"row_lstm": "row_lstm", "diagonal_bilstm": "diagonal_bilstm"}


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, arch="diagonal_bilstm")
  c = base_config()
  c.method = "autoregressive"
  c.data.source = "tfds"
  c.data.name = "mnist"
  c.data.image_size = 28
  c.data.channels = 1
  c.data.num_classes = 10
  c.data.binarize = "dynamic"

  c.model = ml_collections.ConfigDict()
  c.model.arch = "pixelrnn" if args.arch in LAYER else args.arch
  c.model.layer = LAYER.get(args.arch, "row_lstm")   # pixelrnn only
  c.model.likelihood = "bernoulli"
  c.model.hidden = 16
  c.model.num_blocks = 7                # pixelcnn: residual blocks
  c.model.num_layers = 7                # pixelrnn / gated_pixelcnn: layers
  c.model.conditional = False           # gated_pixelcnn: class-conditional (labels)
  c.model.dtype = "float32"

  c.optim = ml_collections.ConfigDict(dict(name="adam", lr=1e-3, grad_clip=1.0))
  c.train.batch_size = 64
  c.train.num_steps = 200_000
  c.train.log_every = 200
  c.train.sample_every = 10_000
  c.train.num_samples = 16              # pixel-by-pixel: 784 network calls per grid
  c.train.ckpt_every = 5000
  c.train.eval_every = 20_000
  c.eval.batch_size = 100
  c.eval.num_samples = 16
  c.sample = ml_collections.ConfigDict(dict(progress=True))
  c.sample.cached = True                # pixelcnn / gated_pixelcnn / pixelcnnpp: cached sampler (False: naive)
  if args.tiny:
    c.data.image_size = 8
    c.data.num_train_examples = 256
    c.model.hidden, c.model.num_blocks, c.model.num_layers = 4, 1, 2
    c.train.update(dict(batch_size=16, num_steps=10, log_every=5, sample_every=10, num_samples=4,
                        ckpt_every=10, eval_every=0))
    c.eval.update(dict(batch_size=16, num_examples=32, num_samples=4))
  return c
