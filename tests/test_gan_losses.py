"""GAN losses, regularisers and auxiliary terms against hand-computed values; the gradient penalty
and R1 against finite differences of a numpy float64 discriminator; spectral normalisation against
numpy's SVD, and its power-iteration state carried across steps."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen.gan import losses
from jaxgen.gan.losses import LOSSES
from jaxgen.nn import spectral


def _softplus(x: float) -> float:
  return math.log1p(math.exp(x))


def test_the_shared_losses_keep_their_names():
  # CycleGAN and SRGAN import these three; the GANLoss shape is (d_loss(real, fake), g_loss(fake), threshold).
  assert {"non_saturating", "lsgan", "hinge"} <= set(LOSSES)
  assert set(LOSSES) == {"minimax", "non_saturating", "lsgan", "hinge", "wasserstein"}
  assert all(isinstance(l, losses.GANLoss) for l in LOSSES.values())


def test_minimax_and_wasserstein_known_values():
  real, fake = jnp.array([0.0, 2.0]), jnp.array([-1.0, 3.0])
  mm = LOSSES["minimax"]
  want_d = (_softplus(0.0) + _softplus(-2.0)) / 2 + (_softplus(-1.0) + _softplus(3.0)) / 2
  np.testing.assert_allclose(mm.d_loss(real, fake), want_d, rtol=1e-6)
  # G minimises log(1 - sigmoid(f)) = -softplus(f): mean(log(1 - s(-1)), log(1 - s(3))).
  sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
  want_g = (math.log(1 - sig(-1.0)) + math.log(1 - sig(3.0))) / 2
  np.testing.assert_allclose(mm.g_loss(fake), want_g, rtol=1e-6)
  # Saturation: when D rejects a fake confidently (logit -10) the minimax gradient is ~sigmoid(-10),
  # the non-saturating one ~1.
  g_mm = jax.grad(lambda f: mm.g_loss(f))(jnp.array([-10.0]))
  g_ns = jax.grad(lambda f: LOSSES["non_saturating"].g_loss(f))(jnp.array([-10.0]))
  np.testing.assert_allclose(g_mm, [-sig(-10.0)], rtol=1e-5)
  np.testing.assert_allclose(g_ns, [-(1 - sig(-10.0))], rtol=1e-5)
  w = LOSSES["wasserstein"]
  np.testing.assert_allclose(w.d_loss(jnp.array([1.0, 3.0]), jnp.array([0.5, -1.5])), -0.5 - 2.0)
  np.testing.assert_allclose(w.g_loss(jnp.array([0.5, -1.5])), 0.5)


# ---------------------------------------------------------------------------------- regularisers

def _mlp_numpy(x: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
  """A smooth float64 discriminator [B, H, W, C] -> [B]: tanh hidden layer, linear output."""
  return np.tanh(x.reshape(x.shape[0], -1) @ w1) @ w2


def _fd_grad(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
  """Central finite differences of sum(f(x)) in float64, per input element."""
  g = np.zeros_like(x)
  flat, gflat = x.reshape(-1), g.reshape(-1)
  for i in range(flat.size):
    old = flat[i]
    flat[i] = old + h
    up = f(x).sum()
    flat[i] = old - h
    down = f(x).sum()
    flat[i] = old
    gflat[i] = (up - down) / (2 * h)
  return g


@pytest.fixture(scope="module")
def mlp():
  rs = np.random.RandomState(0)
  w1, w2 = rs.normal(0, 0.5, (12, 5)), rs.normal(0, 1.0, (5,))
  d_fn = lambda x: jnp.tanh(x.reshape(x.shape[0], -1) @ jnp.asarray(w1, jnp.float32)) @ jnp.asarray(w2, jnp.float32)  # noqa: E731
  return w1, w2, d_fn, rs


def test_gradient_penalty_matches_finite_differences(mlp):
  w1, w2, d_fn, rs = mlp
  real, fake = rs.uniform(-1, 1, (4, 2, 2, 3)), rs.uniform(-1, 1, (4, 2, 2, 3))
  rng = jax.random.PRNGKey(3)
  got = losses.gradient_penalty(d_fn, jnp.asarray(real, jnp.float32), jnp.asarray(fake, jnp.float32), rng)
  # The same interpolation coefficients as the function draws.
  eps = np.asarray(jax.random.uniform(rng, (4, 1, 1, 1), jnp.float32), np.float64)
  x_hat = eps * real + (1 - eps) * fake
  g = _fd_grad(lambda x: _mlp_numpy(x, w1, w2), x_hat.copy())
  norms = np.sqrt((g.reshape(4, -1) ** 2).sum(1))
  want = np.mean((norms - 1.0) ** 2)
  assert abs(want) > 1e-2   # not a degenerate case
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_gradient_penalty_linear_critic_by_hand():
  """D(x) = <w, x>: the input gradient is w everywhere, so the penalty is (||w|| - 1)^2 whatever the
  interpolates; its gradient wrt w is 2 (||w|| - 1) w / ||w|| (double backprop through the norm)."""
  w = jnp.array([3.0, 4.0])   # ||w|| = 5
  x = jnp.asarray(np.random.RandomState(0).normal(size=(6, 2)), jnp.float32)
  pen = lambda w: losses.gradient_penalty(lambda v: v @ w, x, -x, jax.random.PRNGKey(0))  # noqa: E731
  np.testing.assert_allclose(pen(w), 16.0, rtol=1e-6)
  np.testing.assert_allclose(jax.grad(pen)(w), 2 * 4 * np.array([3.0, 4.0]) / 5, rtol=1e-5)


def test_r1_matches_finite_differences_and_a_closed_form(mlp):
  w1, w2, d_fn, rs = mlp
  real = rs.uniform(-1, 1, (3, 2, 2, 3))
  got = losses.r1_penalty(d_fn, jnp.asarray(real, jnp.float32))
  g = _fd_grad(lambda x: _mlp_numpy(x, w1, w2), real.copy())
  np.testing.assert_allclose(got, np.mean((g.reshape(3, -1) ** 2).sum(1)), rtol=1e-4)
  # D(x) = a ||x||^2: grad 2 a x, so mean ||grad||^2 = 4 a^2 mean ||x||^2.
  x = jnp.array([[1.0, 2.0], [0.0, 3.0]])
  np.testing.assert_allclose(losses.r1_penalty(lambda v: 0.5 * jnp.sum(v ** 2, 1), x), (5 + 9) / 2)


def test_class_and_code_likelihoods_by_hand():
  logits = jnp.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
  labels = jnp.array([0, 2])
  lse = math.log(math.exp(2) + 2)
  want = ((lse - 2.0) + math.log(3)) / 2
  np.testing.assert_allclose(losses.class_nll(logits, labels), want, rtol=1e-6)
  # Gaussian: code (1, 0) under N(0, 1) and N(0.5, e^2) per dimension.
  mean = jnp.array([[0.0, 0.5]])
  logvar = jnp.array([[0.0, 2.0]])
  codes = jnp.array([[1.0, 0.0]])
  half_log_2pi = 0.5 * math.log(2 * math.pi)
  want = (0.5 * 1.0 + half_log_2pi) + (0.5 * 0.25 / math.exp(2.0) + 1.0 + half_log_2pi)
  np.testing.assert_allclose(losses.continuous_code_nll(mean, logvar, codes), want, rtol=1e-6)
  assert losses.categorical_entropy(10) == pytest.approx(math.log(10))
  assert losses.uniform_entropy(-1, 1) == pytest.approx(math.log(2))


# ------------------------------------------------------------------------- spectral normalisation

class _Net(nn.Module):
  @nn.compact
  def __call__(self, x, train):
    x = spectral.SNConv(6, (3, 3), strides=2, name="conv")(x, train)
    return spectral.SNDense(4, name="dense")(x.reshape(x.shape[0], -1), train)


def _sigma_max(w: np.ndarray) -> float:
  return float(np.linalg.svd(np.asarray(w, np.float64).reshape(-1, w.shape[-1]), compute_uv=False)[0])


def test_spectral_norm_reaches_unit_singular_value_and_carries_its_state():
  net = _Net()
  x = jnp.asarray(np.random.RandomState(0).normal(size=(2, 8, 8, 3)), jnp.float32)
  variables = jax.jit(net.init, static_argnames="train")(jax.random.PRNGKey(0), x, train=False)
  assert set(variables["spectral"]["conv"]) == {"kernel_u", "kernel_sigma"}
  assert variables["spectral"]["conv"]["kernel_u"].shape == (6,)
  params = variables["params"]

  @jax.jit
  def step(state):
    _, new = net.apply({"params": params, "spectral": state}, x, train=True, mutable=["spectral"])
    return new["spectral"]

  state = variables["spectral"]
  sigmas = []
  for _ in range(30):
    state = step(state)
    sigmas.append(float(state["conv"]["kernel_sigma"]))
  for name in ("conv", "dense"):
    kernel = np.asarray(params[name]["kernel"])
    true = _sigma_max(kernel)
    est = float(state[name]["kernel_sigma"])
    # The normalised weight's largest singular value, from numpy's SVD, is within 1e-2 of 1.
    assert abs(_sigma_max(kernel / est) - 1.0) < 1e-2, (name, true, est)
  # The estimate is carried across steps: it converges from below (power iteration), so an
  # early step's estimate is further off than the last (a reset u each step would stay put).
  true = _sigma_max(np.asarray(params["conv"]["kernel"]))
  assert abs(sigmas[0] - true) > abs(sigmas[-1] - true)
  assert abs(sigmas[0] - true) / true > 1e-3

  # Eval mode: no iteration, no state change; the output uses the stored u (W / ||W u||).
  out_eval = net.apply({"params": params, "spectral": state}, x, train=False)
  again = net.apply({"params": params, "spectral": state}, x, train=False)
  np.testing.assert_array_equal(out_eval, again)
  # The normalised layer equals the plain layer with the kernel divided by the estimate.
  u = np.asarray(state["dense"]["kernel_u"])
  wd = np.asarray(params["dense"]["kernel"], np.float64)
  sigma_eval = np.linalg.norm(wd @ u)
  h = jax.lax.conv_general_dilated(x, params["conv"]["kernel"] / jnp.linalg.norm(
      np.asarray(params["conv"]["kernel"]).reshape(-1, 6) @ np.asarray(state["conv"]["kernel_u"])),
      (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")) + params["conv"]["bias"]
  want = h.reshape(2, -1) @ (wd / sigma_eval) + np.asarray(params["dense"]["bias"])
  np.testing.assert_allclose(out_eval, want, rtol=1e-4, atol=1e-5)


def test_spectral_gradient_treats_u_v_as_constants():
  """d sigma / dW = v u^T (Miyato et al. Eq. 12's building block): the gradient of the normalised
  layer's output sum matches finite differences of the same computation with u fixed."""
  class One(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return spectral.SNDense(3, use_bias=False)(x, train)

  net = One()
  x = jnp.asarray(np.random.RandomState(1).normal(size=(4, 5)), jnp.float32)
  v = jax.jit(net.init, static_argnames="train")(jax.random.PRNGKey(0), x, train=False)
  f = lambda k: jnp.sum(net.apply({"params": {"SNDense_0": {"kernel": k}}, "spectral": v["spectral"]},  # noqa: E731
                                  x, train=False) ** 2)
  k = v["params"]["SNDense_0"]["kernel"]
  g = np.asarray(jax.grad(f)(k))
  u = np.asarray(v["spectral"]["SNDense_0"]["kernel_u"], np.float64)
  kn, xn = np.asarray(k, np.float64), np.asarray(x, np.float64)
  ref = lambda kk: np.sum((xn @ (kk / np.linalg.norm(kk @ u))) ** 2)  # noqa: E731
  fd = np.zeros_like(kn)
  for idx in np.ndindex(kn.shape):
    up, down = kn.copy(), kn.copy()
    up[idx] += 1e-6
    down[idx] -= 1e-6
    fd[idx] = (ref(up) - ref(down)) / 2e-6
  np.testing.assert_allclose(g, fd, rtol=1e-3, atol=1e-4)


def test_spectral_off_is_the_plain_layer():
  x = jnp.ones((2, 4))
  sn = spectral.SNDense(3, spectral=False)
  v = sn.init(jax.random.PRNGKey(0), x, train=True)
  assert set(v) == {"params"}
  np.testing.assert_allclose(sn.apply(v, x, train=True), x @ v["params"]["kernel"] + v["params"]["bias"],
                             rtol=1e-6)
