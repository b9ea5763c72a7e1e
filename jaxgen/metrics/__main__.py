"""Command line: metrics between image folders / `.npz` files, weight conversion, extractor benchmark.

  python -m jaxgen.metrics fid PATH_A PATH_B     # also kid, pr (PATH_A = real / reference side)
  python -m jaxgen.metrics stats PATH --out X.npz  # mu / sigma (+ provenance) of PATH, for `fid`
  python -m jaxgen.metrics is PATH               # needs weights with the 1008-way fc layer
  python -m jaxgen.metrics convert FILE [--out X.npz]   # NVIDIA .pt / pytorch-fid / torch-fidelity
  python -m jaxgen.metrics bench --num 256 --size 32 --batch 64 [--torchscript default_1.pt]

A PATH is a folder of PNG/JPEG images, an `.npz` of uint8 images [N, H, W, C] (first array), or for
FID an `.npz` of statistics (`mu`, `sigma`).
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np

import jaxgen  # noqa: F401  (XLA:CPU defaults before JAX starts)
from jaxgen import metrics
from jaxgen.metrics import weights as weights_lib

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _image_files(p: pathlib.Path):
  files = sorted(f for f in p.rglob("*") if f.suffix.lower() in _IMAGE_SUFFIXES)
  if not files:
    raise SystemExit(f"no images ({', '.join(_IMAGE_SUFFIXES)}) under {p}")
  return files


def iter_images(path: str, chunk: int):
  """Folder of images or `.npz` -> uint8 [<=chunk, H, W, C] chunks; a folder is read chunk by chunk."""
  p = pathlib.Path(path)
  if p.is_dir():
    from PIL import Image  # local: only the CLI reads image files
    files = _image_files(p)
    for i in range(0, len(files), chunk):
      yield np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[i:i + chunk]])
    return
  with np.load(p) as z:
    images = z[z.files[0]]
  for i in range(0, len(images), chunk):
    yield np.asarray(images[i:i + chunk])


def load_images(path: str) -> np.ndarray:
  """Folder of images or `.npz` -> uint8 [N, H, W, C] (all images must share one size)."""
  return np.concatenate(list(iter_images(path, 1024)))


def _side(path: str, ext, keep_features: bool):
  """-> (ReferenceStats, logits list) for a statistics `.npz` or images (streamed through ext)."""
  if path.endswith(".npz"):
    with np.load(path) as z:
      if "mu" in z.files:
        return metrics.ReferenceStats.load(path), None
  acc, logits, t0 = metrics.FeatureAccumulator(keep_features), [], time.time()
  for images in iter_images(path, 10 * ext.batch_size):
    out = ext(images)
    acc.update(out["pool3"])
    logits.append(out.get("logits"))
    print(f"\r{path}: {acc.n} images, {acc.n / (time.time() - t0):.1f} img/s", end="",
          file=sys.stderr, flush=True)
  print(file=sys.stderr)
  prov = {"path": str(pathlib.Path(path).resolve()), "count": acc.n,
          "inception_weights": ext.weights_id, "preprocess": "uint8 -> TF1 bilinear 299 -> (x-128)/128",
          "created": time.strftime("%Y-%m-%d %H:%M:%S")}
  return metrics.stats_from_features(acc, prov), logits


def _bench(args) -> dict:
  import jax  # noqa: F401
  rng = np.random.RandomState(0)
  # Smooth random images (upsampled noise), so that activations look like natural images'.
  images = rng.randint(0, 256, (args.num, args.size // 4 + 1, args.size // 4 + 1, 3)).astype(np.uint8)
  images = np.repeat(np.repeat(images, 4, 1), 4, 2)[:, :args.size, :args.size]
  ext = metrics.InceptionExtractor(batch_size=args.batch, weights=args.weights)
  ext(images[:args.batch])  # compile + load weights
  t = time.perf_counter()
  feats = ext(images)["pool3"]
  dt = time.perf_counter() - t
  res = {"jaxgen_img_per_s": args.num / dt, "num": args.num, "size": args.size, "batch": args.batch}
  if args.torchscript:
    import torch  # local: optional, only for the reference timing
    torch.set_num_threads(args.threads or torch.get_num_threads())
    net = torch.jit.load(args.torchscript).eval()
    # The reference gets the identical TF1-resized input; its time is the network only.
    inputs = [torch.from_numpy(np.array(metrics.resize_and_scale(images[i:i + args.batch])))
              .permute(0, 3, 1, 2) for i in range(0, args.num, args.batch)]
    with torch.no_grad():
      net(inputs[0])
      t = time.perf_counter()
      ref = np.concatenate([net(x).numpy() for x in inputs])
      dt_ref = time.perf_counter() - t
    res.update(torchscript_img_per_s=args.num / dt_ref, speedup=dt_ref / dt,
               max_rel_feature_diff=float(np.abs(feats - ref).max() / np.abs(ref).max()))
  return res


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(prog="python -m jaxgen.metrics", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = ap.add_subparsers(dest="cmd", required=True)
  for name in ("fid", "kid", "pr"):
    s = sub.add_parser(name)
    s.add_argument("path_a")
    s.add_argument("path_b")
  s = sub.add_parser("is")
  s.add_argument("path")
  s = sub.add_parser("stats")
  s.add_argument("path")
  s.add_argument("--out", required=True, help="statistics .npz (mu, sigma, provenance)")
  s = sub.add_parser("convert")
  s.add_argument("src")
  s.add_argument("--out", default=None)
  s = sub.add_parser("bench")
  s.add_argument("--num", type=int, default=256)
  s.add_argument("--size", type=int, default=32)
  s.add_argument("--batch", type=int, default=64)
  s.add_argument("--torchscript", default=None, help="NVIDIA TorchScript file for the reference")
  s.add_argument("--threads", type=int, default=0)
  for s in sub.choices.values():
    if s.prog.split()[-1] != "convert":
      s.add_argument("--weights", default=None, help="weights .npz / torch file (default: cached)")
      s.add_argument("--batch_size", type=int, default=50)
  args = ap.parse_args(argv)

  if args.cmd == "convert":
    print(weights_lib.convert_file(args.src, args.out))
    return
  if args.cmd == "bench":
    print(json.dumps(_bench(args)))
    return
  ext = metrics.InceptionExtractor(batch_size=args.batch_size, weights=args.weights)
  if args.cmd == "stats":
    stats, _ = _side(args.path, ext, False)
    stats.save(args.out)
    print(json.dumps({"out": args.out, **stats.provenance}))
    return
  if args.cmd == "is":
    if not ext.has_logits:
      raise SystemExit(f"Inception Score needs the 1008-way logits. {weights_lib.WHERE_TO_GET}")
    _, logits = _side(args.path, ext, False)
    mean, std = metrics.inception_score(np.concatenate(logits))
    result = {"is_mean": mean, "is_std": std}
  else:
    keep = args.cmd != "fid"
    a, _ = _side(args.path_a, ext, keep)
    b, _ = _side(args.path_b, ext, keep)
    if keep and (a.features is None or b.features is None):
      raise SystemExit(f"{args.cmd} needs images (features), not mu/sigma statistics files")
    if args.cmd == "fid":
      result = {"fid": metrics.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)}
    elif args.cmd == "kid":
      m = min(1000, len(a.features), len(b.features))
      mean, std = metrics.kid(b.features, a.features, subset_size=m)
      result = {"kid_mean": mean, "kid_std": std, "kid_subset_size": m}
    else:
      p, r = metrics.precision_recall(a.features, b.features)
      result = {"precision": p, "recall": r}
  print(json.dumps(result))


if __name__ == "__main__":
  sys.exit(main())
