r"""A CPU-sized CLIP on the embedded shapes captions ("a red circle on a gray background"): no
files, no network.

  python -m jaxgen.main --config=configs/clip/shapes.py --workdir=workdir/clip_shapes
  python -m jaxgen.main --config=configs/clip/shapes.py --workdir=workdir/clip_shapes --mode=eval
Smoke test (seconds): --config=configs/clip/shapes.py:tiny

A 2-layer ViT (patch 8 at 32 x 32, width 64) and a 2-layer text Transformer (width 64) over the byte
tokenizer, embed_dim 64; AdamW as the paper (b2 0.98, eps 1e-6, wd 0.2 off gains / biases) at
lr 1e-3 with a short warm-up and cosine decay. Evaluated by zero-shot classification of the 10
shape x colour classes (class names through one template per background, averaged) and by
image <-> caption retrieval on the test split. No paper number: chance is 10 % top-1; the learning
check in tests/test_clip.py states what a short run reaches (100 steps at lr 3e-3: zero-shot top-1
0.205, top-5 1.0; text -> image recall@5 0.83: the colour is learnt first, the shape later).

Benchmark beside the PyTorch peer (transformers CLIPModel of the same sizes, 240,961 params both):
  python -m jaxgen.main --config=configs/clip/shapes.py --mode=benchmark --workdir=/tmp/b \
      --config.benchmark.batch_size=64 && python launch/peer_torch_clip.py --arch tiny --batch 64
Measured on the loaded 2-core host (load ~8, rough): train step 0.47 s (134.8 images/s) vs torch
4.1 s (15.6 images/s); image encoding 2272 vs 69 images/s, text encoding 802 vs 253 texts/s.
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.data import shapes
from jaxgen.methods import clip

CLASSES = tuple(f"{c} {s}" for s in shapes.SHAPES for c in shapes.COLOURS)   # label = 2 * shape + colour
TEMPLATES = tuple(f"a {{}} on a {b} background" for b in shapes.BACKGROUNDS)


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, steps=1000)
  c = clip.base_config(clip.TINY)
  c.data.source = "shapes"
  c.data.num_classes = 10
  clip.make_cpu(c, steps=args.steps, batch=64)
  c.eval.evaluators = ("zero_shot", "retrieval")
  c.eval.zero_shot_classes = CLASSES
  c.eval.zero_shot_templates = TEMPLATES
  if args.tiny:
    clip.make_cpu(c, steps=20, batch=16)
  return c
