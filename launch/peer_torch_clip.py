"""Peer reference for `--mode benchmark` of configs/clip: the same CLIP in PyTorch (transformers'
CLIPModel), one training step with the same loss and optimizer, and image / text encoding throughput.

Architecture: a ViT image tower and the causal text Transformer with the sizes of a jaxgen CLIP model
config (OpenAI build_model names; default: jaxgen.methods.clip.TINY, the CPU configs' model;
--arch vit_b32 for OpenAI's ViT-B/32, 151,277,313 parameters). transformers has no modified ResNet,
so RN50 has no peer here. QuickGELU, LayerNorm eps 1e-5, as OpenAI.
Step: symmetric InfoNCE of exp(logit_scale) * cosine logits (the plain full-batch form, one process),
AdamW(lr, betas=(0.9, 0.98), eps=1e-6, weight decay 0.2 off params with ndim < 2 / biases / norms /
logit_scale, as open_clip), then logit_scale clamped to [0, ln 100].

Usage (beside jaxgen's benchmark of the same shapes):
  python -m jaxgen.main --config=configs/clip/shapes.py --mode=benchmark --workdir=/tmp/b \
      --config.benchmark.batch_size=64
  python launch/peer_torch_clip.py --arch tiny --batch 64 [--steps 5] [--warmup 2] [--device cpu]
Prints one JSON line: {"impl": "torch-clip", "params", "step_s_median", "images_per_s",
"image_encode_per_s", "text_encode_per_s"}. Needs torch and transformers (not jaxgen's runtime deps).
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F
import transformers

ARCHS = {
    "tiny": dict(embed_dim=64, image_resolution=32, vision_layers=2, vision_width=64,
                 vision_patch_size=8, context_length=40, vocab_size=257, transformer_width=64,
                 transformer_heads=2, transformer_layers=2),
    "vit_b32": dict(embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768,
                    vision_patch_size=32, context_length=77, vocab_size=49408, transformer_width=512,
                    transformer_heads=8, transformer_layers=12),
}


def clip_model(a: dict) -> transformers.CLIPModel:
  text = transformers.CLIPTextConfig(
      vocab_size=a["vocab_size"], hidden_size=a["transformer_width"],
      intermediate_size=4 * a["transformer_width"], num_hidden_layers=a["transformer_layers"],
      num_attention_heads=a["transformer_heads"], max_position_embeddings=a["context_length"],
      hidden_act="quick_gelu", layer_norm_eps=1e-5, pad_token_id=0, bos_token_id=a["vocab_size"] - 2,
      eos_token_id=a["vocab_size"] - 1)
  vision = transformers.CLIPVisionConfig(
      hidden_size=a["vision_width"], intermediate_size=4 * a["vision_width"],
      num_hidden_layers=a["vision_layers"], num_attention_heads=max(1, a["vision_width"] // 64),
      image_size=a["image_resolution"], patch_size=a["vision_patch_size"],
      hidden_act="quick_gelu", layer_norm_eps=1e-5)
  cfg = transformers.CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(),
                                projection_dim=a["embed_dim"], logit_scale_init_value=math.log(1 / 0.07))
  return transformers.CLIPModel(cfg)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--arch", default="tiny", choices=sorted(ARCHS))
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--lr", type=float, default=5e-4)
  p.add_argument("--device", default="cpu")
  args = p.parse_args()
  a, dev = ARCHS[args.arch], torch.device(args.device)
  model = clip_model(a).to(dev).train()
  decay = [q for n, q in model.named_parameters()
           if q.ndim >= 2 and "bias" not in n and "norm" not in n and "logit_scale" not in n]
  rest = [q for n, q in model.named_parameters() if all(q is not d for d in decay)]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.2}, {"params": rest, "weight_decay": 0.0}],
                          lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
  g = torch.Generator().manual_seed(0)
  r, b = a["image_resolution"], args.batch
  images = torch.rand(b, 3, r, r, generator=g).to(dev)
  tokens = torch.randint(1, a["vocab_size"] - 1, (b, a["context_length"]), generator=g)
  tokens[:, -1] = a["vocab_size"] - 1   # EOT last: pooled there (the largest id, as OpenAI's argmax)
  tokens = tokens.to(dev)
  labels = torch.arange(b, device=dev)

  def step():
    out = model(input_ids=tokens, pixel_values=images)
    im = F.normalize(out.image_embeds, dim=-1)
    tx = F.normalize(out.text_embeds, dim=-1)
    logits = model.logit_scale.exp() * im @ tx.t()
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
      model.logit_scale.clamp_(0, math.log(100))
    return loss

  def timed(fn):
    ts = []
    for i in range(args.warmup + args.steps):
      t = time.perf_counter()
      fn()
      if dev.type == "cuda":
        torch.cuda.synchronize()
      if i >= args.warmup:
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)

  step_s = timed(step)
  with torch.no_grad():
    model.eval()
    img_s = timed(lambda: model.get_image_features(pixel_values=images))
    txt_s = timed(lambda: model.get_text_features(input_ids=tokens))
  print(json.dumps({"impl": "torch-clip", "arch": args.arch, "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "params": sum(q.numel() for q in model.parameters()), "batch": b,
                    "step_s_median": step_s, "images_per_s": b / step_s,
                    "image_encode_per_s": b / img_s, "text_encode_per_s": b / txt_s}))


if __name__ == "__main__":
  main()
