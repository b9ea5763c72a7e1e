"""Writes the CLIP converter goldens in tests/golden/: small randomly initialised reference models
saved in the layouts released CLIP weights come in, their inputs and their outputs.

Not a test and not a jaxgen dependency: it needs `pip install torch==2.13.0 transformers`. Run from
the repository root:  python tests/golden/make_clip_golden.py

Files:
  clip_hf_tiny.safetensors   transformers CLIPModel (text 16 wide, vision 16 wide, 2 layers, 2 heads
                             each, image 32, patch 8, vocab 50, context 12, projection 8, QuickGELU)
                             as save_pretrained writes model.safetensors
  clip_hf_tiny.bin           the same state dict as pytorch_model.bin (torch.save, zip)
  clip_openai_vit_tiny.pt    OpenAI-layout ViT CLIP (same sizes) as a TorchScript archive
                             (torch.jit.trace + save, as OpenAI ships ViT-B-32.pt)
  clip_openai_vit_tiny_sd.pt ... and its state dict (torch.save, zip)
  clip_openai_rn_tiny.pt     OpenAI-layout ModifiedResNet CLIP (width 4, layers (1, 1, 1, 1), image 64,
                             4 attention-pool heads) wrapped as an open_clip checkpoint
                             {"state_dict": {"module.<key>": ...}} in torch's legacy (pre-1.6) format,
                             BatchNorm running statistics randomised so eval-mode BN is exercised
  clip_golden.npz            inputs and reference outputs, per model m in (hf, vit, rn):
                             m/images [2, R, R, 3] NHWC, m/tokens [3, 12] int32,
                             m/image_features, m/text_features, m/logits_per_image, m/logit_scale
and prints the parameter counts of transformers' default CLIPModel (ViT-B/32) and of OpenAI's RN50.

The OpenAI classes below are copied from openai/CLIP clip/model.py (commit 0845fc4, MIT licence,
Copyright (c) 2021 OpenAI), trimmed to what is run here; the one change: CLIP takes `vision_heads`
(OpenAI derives it as width // 64, which is 0 for these small widths).
"""
import pathlib
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent


# ----------------------------------------------------------------- openai/CLIP clip/model.py (MIT)
class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu1 = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.relu2 = nn.ReLU(inplace=True)
    self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
    self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * self.expansion)
    self.relu3 = nn.ReLU(inplace=True)
    self.downsample = None
    self.stride = stride
    if stride > 1 or inplanes != planes * Bottleneck.expansion:
      self.downsample = nn.Sequential(OrderedDict([
          ("-1", nn.AvgPool2d(stride)),
          ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
          ("1", nn.BatchNorm2d(planes * self.expansion))]))

  def forward(self, x):
    identity = x
    out = self.relu1(self.bn1(self.conv1(x)))
    out = self.relu2(self.bn2(self.conv2(out)))
    out = self.avgpool(out)
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
      identity = self.downsample(x)
    out += identity
    return self.relu3(out)


class AttentionPool2d(nn.Module):
  def __init__(self, spacial_dim, embed_dim, num_heads, output_dim=None):
    super().__init__()
    self.positional_embedding = nn.Parameter(torch.randn(spacial_dim ** 2 + 1, embed_dim) / embed_dim ** 0.5)
    self.k_proj = nn.Linear(embed_dim, embed_dim)
    self.q_proj = nn.Linear(embed_dim, embed_dim)
    self.v_proj = nn.Linear(embed_dim, embed_dim)
    self.c_proj = nn.Linear(embed_dim, output_dim or embed_dim)
    self.num_heads = num_heads

  def forward(self, x):
    x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3]).permute(2, 0, 1)
    x = torch.cat([x.mean(dim=0, keepdim=True), x], dim=0)
    x = x + self.positional_embedding[:, None, :].to(x.dtype)
    x, _ = F.multi_head_attention_forward(
        query=x, key=x, value=x, embed_dim_to_check=x.shape[-1], num_heads=self.num_heads,
        q_proj_weight=self.q_proj.weight, k_proj_weight=self.k_proj.weight,
        v_proj_weight=self.v_proj.weight, in_proj_weight=None,
        in_proj_bias=torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]),
        bias_k=None, bias_v=None, add_zero_attn=False, dropout_p=0,
        out_proj_weight=self.c_proj.weight, out_proj_bias=self.c_proj.bias,
        use_separate_proj_weight=True, training=self.training, need_weights=False)
    return x[0]


class ModifiedResNet(nn.Module):
  def __init__(self, layers, output_dim, heads, input_resolution=224, width=64):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(width // 2)
    self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(width // 2)
    self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
    self.bn3 = nn.BatchNorm2d(width)
    self.avgpool = nn.AvgPool2d(2)
    self.relu = nn.ReLU(inplace=True)
    self._inplanes = width
    self.layer1 = self._make_layer(width, layers[0])
    self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
    self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
    self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
    self.attnpool = AttentionPool2d(input_resolution // 32, width * 32, heads, output_dim)

  def _make_layer(self, planes, blocks, stride=1):
    layers = [Bottleneck(self._inplanes, planes, stride)]
    self._inplanes = planes * Bottleneck.expansion
    for _ in range(1, blocks):
      layers.append(Bottleneck(self._inplanes, planes))
    return nn.Sequential(*layers)

  def forward(self, x):
    for conv, bn in [(self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)]:
      x = self.relu(bn(conv(x)))
    x = self.avgpool(x)
    x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
    return self.attnpool(x)


class LayerNorm(nn.LayerNorm):
  def forward(self, x):
    orig_type = x.dtype
    return super().forward(x.type(torch.float32)).type(orig_type)


class QuickGELU(nn.Module):
  def forward(self, x):
    return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
  def __init__(self, d_model, n_head, attn_mask=None):
    super().__init__()
    self.attn = nn.MultiheadAttention(d_model, n_head)
    self.ln_1 = LayerNorm(d_model)
    self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d_model, d_model * 4)),
                                          ("gelu", QuickGELU()),
                                          ("c_proj", nn.Linear(d_model * 4, d_model))]))
    self.ln_2 = LayerNorm(d_model)
    self.attn_mask = attn_mask

  def attention(self, x):
    mask = self.attn_mask.to(dtype=x.dtype, device=x.device) if self.attn_mask is not None else None
    return self.attn(x, x, x, need_weights=False, attn_mask=mask)[0]

  def forward(self, x):
    x = x + self.attention(self.ln_1(x))
    return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
  def __init__(self, width, layers, heads, attn_mask=None):
    super().__init__()
    self.width, self.layers = width, layers
    self.resblocks = nn.Sequential(*[ResidualAttentionBlock(width, heads, attn_mask) for _ in range(layers)])

  def forward(self, x):
    return self.resblocks(x)


class VisionTransformer(nn.Module):
  def __init__(self, input_resolution, patch_size, width, layers, heads, output_dim):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
    scale = width ** -0.5
    self.class_embedding = nn.Parameter(scale * torch.randn(width))
    self.positional_embedding = nn.Parameter(scale * torch.randn((input_resolution // patch_size) ** 2 + 1, width))
    self.ln_pre = LayerNorm(width)
    self.transformer = Transformer(width, layers, heads)
    self.ln_post = LayerNorm(width)
    self.proj = nn.Parameter(scale * torch.randn(width, output_dim))

  def forward(self, x):
    x = self.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
    x = torch.cat([self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype), x], dim=1)
    x = self.ln_pre(x + self.positional_embedding.to(x.dtype))
    x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    return self.ln_post(x[:, 0, :]) @ self.proj


class CLIP(nn.Module):
  def __init__(self, embed_dim, image_resolution, vision_layers, vision_width, vision_patch_size,
               context_length, vocab_size, transformer_width, transformer_heads, transformer_layers,
               vision_heads=None):
    super().__init__()
    self.context_length = context_length
    if isinstance(vision_layers, (tuple, list)):
      self.visual = ModifiedResNet(vision_layers, embed_dim, vision_heads or vision_width * 32 // 64,
                                   image_resolution, vision_width)
    else:
      self.visual = VisionTransformer(image_resolution, vision_patch_size, vision_width, vision_layers,
                                      vision_heads or vision_width // 64, embed_dim)
    self.transformer = Transformer(transformer_width, transformer_layers, transformer_heads,
                                   self.build_attention_mask())
    self.token_embedding = nn.Embedding(vocab_size, transformer_width)
    self.positional_embedding = nn.Parameter(torch.empty(self.context_length, transformer_width))
    self.ln_final = LayerNorm(transformer_width)
    self.text_projection = nn.Parameter(torch.empty(transformer_width, embed_dim))
    self.logit_scale = nn.Parameter(torch.ones([]) * np.log(1 / 0.07))
    self.initialize_parameters()

  def initialize_parameters(self):
    nn.init.normal_(self.token_embedding.weight, std=0.02)
    nn.init.normal_(self.positional_embedding, std=0.01)
    if isinstance(self.visual, ModifiedResNet):
      std = self.visual.attnpool.c_proj.in_features ** -0.5
      for p in (self.visual.attnpool.q_proj, self.visual.attnpool.k_proj,
                self.visual.attnpool.v_proj, self.visual.attnpool.c_proj):
        nn.init.normal_(p.weight, std=std)
      for block in [self.visual.layer1, self.visual.layer2, self.visual.layer3, self.visual.layer4]:
        for name, param in block.named_parameters():
          if name.endswith("bn3.weight"):
            nn.init.zeros_(param)
    proj_std = (self.transformer.width ** -0.5) * ((2 * self.transformer.layers) ** -0.5)
    attn_std = self.transformer.width ** -0.5
    fc_std = (2 * self.transformer.width) ** -0.5
    for block in self.transformer.resblocks:
      nn.init.normal_(block.attn.in_proj_weight, std=attn_std)
      nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
      nn.init.normal_(block.mlp.c_fc.weight, std=fc_std)
      nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
    nn.init.normal_(self.text_projection, std=self.transformer.width ** -0.5)

  def build_attention_mask(self):
    mask = torch.empty(self.context_length, self.context_length)
    mask.fill_(float("-inf"))
    mask.triu_(1)
    return mask

  def encode_image(self, image):
    return self.visual(image)

  def encode_text(self, text):
    x = self.token_embedding(text) + self.positional_embedding
    x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
    x = self.ln_final(x)
    return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection

  def forward(self, image, text):
    return self.encode_image(image), self.encode_text(text), self.logit_scale
# ------------------------------------------------------------------------------- end of the copy


CONTEXT, VOCAB = 12, 50


def _tokens(rng):
  """3 sequences: start id 48, words < 48, the EOT id 49 (the largest) at different places, zeros
  after it (as CLIP's tokenizer pads)."""
  t = np.zeros((3, CONTEXT), np.int64)
  for i, n in enumerate((3, 7, CONTEXT - 2)):
    t[i, 0] = VOCAB - 2
    t[i, 1:n + 1] = rng.integers(1, VOCAB - 2, n)
    t[i, n + 1] = VOCAB - 1
  return t


def _randomise_small(model, rng_torch):
  """Biases and LayerNorm / BatchNorm affine params redrawn N(0, 0.1) and BatchNorm running
  statistics randomised, so that a dropped or misplaced one shows in the outputs."""
  for name, p in model.named_parameters():
    if name.endswith("bias") or (p.ndim == 1 and "ln" in name) or ".bn" in name or "downsample.1" in name:
      with torch.no_grad():
        p.add_(torch.randn(p.shape, generator=rng_torch) * 0.1)
  for m in model.modules():
    if isinstance(m, nn.BatchNorm2d):
      m.running_mean.normal_(0.0, 0.1, generator=rng_torch)
      m.running_var.uniform_(0.5, 1.5, generator=rng_torch)


def _record(out, prefix, images_nchw, tokens, img, txt, scale):
  img, txt, scale = img.detach().double(), txt.detach().double(), scale.detach()
  logits = scale.double().exp() * (img / img.norm(dim=-1, keepdim=True)) @ (txt / txt.norm(dim=-1, keepdim=True)).T
  out[f"{prefix}/images"] = images_nchw.permute(0, 2, 3, 1).numpy()
  out[f"{prefix}/tokens"] = tokens.numpy().astype(np.int32)
  out[f"{prefix}/image_features"] = img.numpy().astype(np.float32)
  out[f"{prefix}/text_features"] = txt.numpy().astype(np.float32)
  out[f"{prefix}/logits_per_image"] = logits.numpy().astype(np.float32)
  out[f"{prefix}/logit_scale"] = np.float32(scale.item())


def main():
  import transformers  # pylint: disable=g-import-not-at-top
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  gen = torch.Generator().manual_seed(1)
  rng = np.random.default_rng(0)
  out = {}

  print("transformers CLIPModel() (ViT-B/32) parameters:",
        sum(p.numel() for p in transformers.CLIPModel(transformers.CLIPConfig()).parameters()))
  print("openai RN50 parameters:",
        sum(p.numel() for p in CLIP(1024, 224, (3, 4, 6, 3), 64, None, 77, 49408, 512, 8, 12).parameters()))

  # --- transformers CLIPModel
  cfg = transformers.CLIPConfig(
      text_config=dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=CONTEXT, hidden_act="quick_gelu",
                       bos_token_id=VOCAB - 2, eos_token_id=2, pad_token_id=0),
      vision_config=dict(hidden_size=16, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, image_size=32, patch_size=8, hidden_act="quick_gelu"),
      projection_dim=8)
  hf = transformers.CLIPModel(cfg).eval()
  _randomise_small(hf, gen)
  with torch.no_grad():
    hf.logit_scale.fill_(2.3)
  sd = {k: v.contiguous() for k, v in hf.state_dict().items()}
  save_file(sd, str(OUT / "clip_hf_tiny.safetensors"), metadata={"format": "pt"})
  torch.save(sd, OUT / "clip_hf_tiny.bin")
  images = torch.randn(2, 3, 32, 32, generator=gen)
  tokens = torch.from_numpy(_tokens(rng))
  with torch.no_grad():
    o = hf(input_ids=tokens, pixel_values=images)
    img = hf.visual_projection(hf.vision_model(pixel_values=images).pooler_output)
    txt = hf.text_projection(hf.text_model(input_ids=tokens).pooler_output)
  _record(out, "hf", images, tokens, img, txt, hf.logit_scale.detach())
  np.testing.assert_allclose(out["hf/logits_per_image"], o.logits_per_image.numpy(), rtol=1e-4, atol=1e-4)

  # --- OpenAI layout, ViT: TorchScript archive and state dict
  vit = CLIP(8, 32, 2, 16, 8, CONTEXT, VOCAB, 16, 2, 2, vision_heads=2).eval()
  _randomise_small(vit, gen)
  with torch.no_grad():
    img, txt, scale = vit(images, tokens)
  _record(out, "vit", images, tokens, img, txt, scale)
  torch.jit.save(torch.jit.trace(vit, (images, tokens)), str(OUT / "clip_openai_vit_tiny.pt"))
  torch.save(vit.state_dict(), OUT / "clip_openai_vit_tiny_sd.pt")

  # --- OpenAI layout, ModifiedResNet, as an open_clip checkpoint in the legacy format
  rn = CLIP(8, 64, (1, 1, 1, 1), 4, None, CONTEXT, VOCAB, 16, 2, 2).eval()
  _randomise_small(rn, gen)
  images64 = torch.randn(2, 3, 64, 64, generator=gen)
  with torch.no_grad():
    img, txt, scale = rn(images64, tokens)
  _record(out, "rn", images64, tokens, img, txt, scale)
  torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in rn.state_dict().items()}},
             OUT / "clip_openai_rn_tiny.pt", _use_new_zipfile_serialization=False)

  np.savez(OUT / "clip_golden.npz", **out)
  for f in sorted(OUT.glob("clip_*")):
    print(f.name, f.stat().st_size)


if __name__ == "__main__":
  main()
