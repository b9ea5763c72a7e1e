"""The MLP players of the original GAN (Goodfellow et al. 2014) and the conditional GAN (Mirza &
Osindero 2014), on flattened images.

The paper's MNIST model (the authors' released pylearn2 `mnist.yaml`):
  G: z (100) -> 1200 ReLU -> 1200 ReLU -> 784 sigmoid;
  D: x (784) -> maxout 240 units x 5 pieces -> maxout 240 x 5 -> sigmoid, with dropout (input
     units kept with p 0.8, hidden with p 0.5).
Here G's output is tanh (images in [-1, 1]; tanh(a) = 2 sigmoid(2a) - 1, the same family), and D
is a trunk that ends at its last hidden layer: the sigmoid output unit is the shared "logit" head
(jaxgen.gan.heads), which also gives the cGAN its label input (concatenated with the flattened
image; the paper maps y through its own maxout layer of 50 units first) or the projection head.
Maxout is kept (pieces > 1); pieces = 1 gives plain LeakyReLU(0.2) layers instead.
"""
from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.gan.heads import concat_condition
from jaxgen.nn.linear import Dense


class Generator(nn.Module):
  """z [B, z_in] (noise, and any one-hot label / codes appended) -> images float32 [B, H, W, C] in
  [-1, 1].

  Attributes:
    image_shape: (H, W, C) of the output.
    hidden: widths of the ReLU hidden layers (paper: 1200, 1200).
    dtype: compute dtype; params are float32.
  """
  image_shape: Sequence[int]
  hidden: Sequence[int] = (1200, 1200)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    del train   # no batch statistics or dropout in G
    x = z.astype(self.dtype)
    for i, width in enumerate(self.hidden):
      x = nn.relu(Dense(width, dtype=self.dtype, name=f"hidden{i}")(x))
    h, w, c = self.image_shape
    x = Dense(h * w * c, dtype=self.dtype, name="to_image")(x)
    return jnp.tanh(x.astype(jnp.float32)).reshape(z.shape[0], h, w, c)


class DiscriminatorTrunk(nn.Module):
  """images [B, H, W, C] -> features [B, hidden[-1]] (jaxgen.gan.heads trunk interface).

  Attributes:
    hidden: maxout units per layer (paper: 240, 240).
    pieces: maxout pieces (paper: 5); 1 = Dense + LeakyReLU(0.2).
    input_dropout, hidden_dropout: drop rates in training (paper: 0.2 and 0.5); they need a
      "dropout" rng when train=True.
    dtype: compute dtype; params are float32.
  """
  hidden: Sequence[int] = (240, 240)
  pieces: int = 5
  input_dropout: float = 0.2
  hidden_dropout: float = 0.5
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, cond: Optional[jax.Array] = None) -> jax.Array:
    x = concat_condition(x.reshape(x.shape[0], -1).astype(self.dtype), cond)
    x = nn.Dropout(self.input_dropout, deterministic=not train)(x)
    for i, units in enumerate(self.hidden):
      y = Dense(units * self.pieces, dtype=self.dtype, name=f"hidden{i}")(x)
      if self.pieces > 1:
        # Maxout (Goodfellow et al. 2013): the max over `pieces` linear units per output unit.
        x = jnp.max(y.reshape(y.shape[0], units, self.pieces), axis=-1)
      else:
        x = nn.leaky_relu(y, 0.2)
      x = nn.Dropout(self.hidden_dropout, deterministic=not train)(x)
    return x
