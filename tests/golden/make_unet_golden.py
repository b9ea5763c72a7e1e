"""Writes tests/golden/unet_diffusers_small.npz: a small diffusers UNet2DModel's weights, inputs, output.

Not a test and not a jaxgen dependency: it needs `pip install torch==2.13.0 diffusers` (made with
diffusers 0.42.1). Run from the repository root:  python tests/golden/make_unet_golden.py

The model has the DDPM structure in miniature (see CONFIG): 3 levels of 16/32/32 channels on 16x16
inputs, attention at 8x8 and in the middle, 2 residual blocks per level, GroupNorm(4) (groups of
several channels, so a wrong grouping is caught), and a class embedding of 11 rows (10 classes + the
null label). The GroupNorm affine parameters and all biases are redrawn at random so that a swapped or
dropped scale/bias changes the output. Output is computed in float64 so the golden value carries
no float32 rounding of its own.
"""
import pathlib

import numpy as np
import torch
from diffusers import UNet2DModel

CONFIG = dict(
    sample_size=16, in_channels=3, out_channels=3, layers_per_block=2,
    block_out_channels=(16, 32, 32),
    down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
    dropout=0.1, norm_num_groups=4, attention_head_dim=None, num_class_embeds=11,
)


def main() -> None:
  torch.manual_seed(0)
  model = UNet2DModel(**CONFIG).eval()
  with torch.no_grad():
    for name, p in model.named_parameters():
      if "norm" in name and name.endswith("weight"):
        p.copy_(1.0 + 0.2 * torch.randn_like(p))
      elif name.endswith("bias"):
        p.copy_(0.2 * torch.randn_like(p))
  state = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}

  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
  t = np.array([17, 803], np.int64)
  y = np.array([3, 10], np.int64)  # 10 = the null label
  model = model.double()
  with torch.no_grad():
    out = model(torch.from_numpy(x).double(), torch.from_numpy(t),
                class_labels=torch.from_numpy(y)).sample.numpy()

  path = pathlib.Path(__file__).with_name("unet_diffusers_small.npz")
  np.savez_compressed(
      path, x=x.transpose(0, 2, 3, 1), t=t.astype(np.int32), y=y.astype(np.int32),
      out=out.transpose(0, 2, 3, 1).astype(np.float32),
      **{f"w/{k}": v for k, v in state.items()})
  n = sum(v.size for v in state.values())
  print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB, {n} params)")


if __name__ == "__main__":
  main()
