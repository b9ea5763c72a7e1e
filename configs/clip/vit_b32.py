r"""CLIP ViT-B/32 (Radford et al. 2021), the exact architecture of OpenAI's released model
(151,277,313 parameters, equal to open_clip's / transformers' CLIPModel default config).

  python -m jaxgen.main --config=configs/clip/vit_b32.py --workdir=workdir/clip_vit_b32 \
      --config.data.path=/data/my_captions      # a folder with captions.jsonl (source "captions")
  python -m jaxgen.main --config=configs/clip/vit_b32.py --mode=benchmark   # synthetic batches
Smoke test (seconds): --config=configs/clip/vit_b32.py:tiny (a 2-layer ViT of the same shape
family on the embedded shapes captions).

Paper hyper-parameters (Tables 18 and 20): batch 32,768, 32 epochs of WIT (400M pairs), AdamW
b1 0.9, b2 0.98, eps 1e-6 (ViT), decoupled weight decay 0.2 (not on gains / biases), lr 5e-4 with
a 2000-iteration linear warm-up then cosine decay, temperature initialised to 0.07 and the logit
scale clipped at 100, 224 x 224 images, context 77 of the 49,408-token BPE.
Targets (zero-shot, Table 11): ImageNet 63.2 %, CIFAR-10 91.3 %, CIFAR-100 65.1 %. Those need WIT,
which is not available here; this file fixes the architecture and optimizer for a run on the data a
user has, and for the benchmark.

Speed, 2-core CPU, batch 16, fp32 (--config.benchmark.batch_size=16 --config.model.dtype=float32),
beside `python launch/peer_torch_clip.py --arch vit_b32 --batch 16` (transformers CLIPModel, same
loss and AdamW) in one command: train step 5.58 s vs 5.36 s, image encoding 19.1 vs 19.0 images/s,
text encoding 24.5 vs 26.7 captions/s; the default bf16 compute: 5.41 s per step. RN50 has no
PyTorch peer here (transformers has no modified ResNet; open_clip needs a matching torchvision).
"""
import ml_collections

from jaxgen.configs import parse_arg
from jaxgen.methods import clip
from jaxgen.models import clip as models


def get_config(arg=None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, tiny=False, batch=32768)
  if args.tiny:
    c = clip.base_config(clip.TINY)
    clip.make_cpu(c, steps=20, batch=16)
    return c
  return clip.paper_config(models.VIT_B32, b2=0.98, eps=1e-6, batch=args.batch)
