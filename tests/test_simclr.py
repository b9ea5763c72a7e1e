"""SimCLR: NT-Xent against a hand computation and, on the 2 test devices, the global-batch loss and
gradients equal to the single-device full-batch formula; ResNet parameter counts equal torchvision's
trunks; the probe / kNN evaluators' solvers on problems with known answers; config errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgen import parallel
from jaxgen.configs import load_config_file
from jaxgen.errors import ConfigError
from jaxgen.methods import simclr
from jaxgen.metrics import probe
from jaxgen.models import resnet


def _hand_nt_xent(z1, z2, t):
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  total = 0.0
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    sims = np.exp(z @ z[i] / t)
    total += -np.log(sims[j] / (sims.sum() - sims[i]))
  return total / (2 * n)


def test_nt_xent_equals_hand_computation():
  rng = np.random.RandomState(0)
  z1, z2 = rng.randn(6, 5).astype(np.float32), rng.randn(6, 5).astype(np.float32)
  np.testing.assert_allclose(float(simclr.nt_xent(z1, z2, 0.5)), _hand_nt_xent(z1, z2, 0.5), rtol=1e-5)
  # Identical, mutually orthogonal views at low temperature: the loss goes to 0.
  e = np.eye(4, dtype=np.float32)
  assert float(simclr.nt_xent(e, e, 0.05)) < 1e-6


def test_global_loss_and_grads_equal_full_batch():
  mesh = parallel.create_mesh({"data": -1})
  assert mesh.size == 2
  rng = np.random.RandomState(1)
  z1, z2 = (jnp.asarray(rng.randn(8, 16).astype(np.float32)) for _ in range(2))
  sh = parallel.batch_sharding(mesh)
  z1s, z2s = jax.device_put(z1, sh), jax.device_put(z2, sh)
  glob = jax.jit(jax.value_and_grad(lambda a, b: simclr.nt_xent_global(a, b, 0.5, mesh), (0, 1)))
  full = jax.value_and_grad(lambda a, b: simclr.nt_xent(a, b, 0.5), (0, 1))
  (lg, gg), (lf, gf) = glob(z1s, z2s), full(z1, z2)
  np.testing.assert_allclose(float(lg), float(lf), rtol=1e-6)
  np.testing.assert_allclose(float(lf), _hand_nt_xent(np.asarray(z1), np.asarray(z2), 0.5), rtol=1e-5)
  for a, b in zip(gg, gf):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)


@pytest.mark.parametrize("depth,stem,want", [(18, "imagenet", 11_176_512), (50, "imagenet", 23_508_032)])
def test_resnet_param_counts_equal_torchvision_trunks(depth, stem, want):
  """torchvision resnet18 / resnet50 minus their 1000-way fc (BN scale and bias counted)."""
  shapes = jax.eval_shape(lambda: resnet.ResNet(depth, stem=stem).init(
      jax.random.key(0), jnp.zeros((1, 64, 64, 3)), train=False))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"])) == want


def test_scaled_lr():
  assert simclr.scaled_lr(0.3, 4096, "linear") == pytest.approx(4.8)
  assert simclr.scaled_lr(0.075, 4096, "sqrt") == pytest.approx(4.8)
  assert simclr.scaled_lr(1.0, 512, "none") == 1.0


def _newton_logreg(x, y, k, l2, iters=50):
  """Reference: Newton's method on the same objective (float64, numpy)."""
  n, d = x.shape
  xa = np.concatenate([x, np.ones((n, 1))], 1).astype(np.float64)
  w = np.zeros((d + 1, k))
  reg = np.diag(np.r_[np.full(d, l2), 0.0])
  yo = np.eye(k)[y]
  for _ in range(iters):
    p = np.exp(xa @ w - (xa @ w).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = xa.T @ (p - yo) / n + reg @ w
    hess = np.zeros(((d + 1) * k,) * 2)
    for i in range(n):
      s = np.diag(p[i]) - np.outer(p[i], p[i])
      hess += np.kron(np.outer(xa[i], xa[i]), s) / n
    hess += np.kron(reg, np.eye(k))
    # The bias is free up to a shared constant (singular Hessian): the min-norm step keeps sum(b) = 0,
    # as gradient steps from zero do.
    w -= np.linalg.lstsq(hess, g.reshape(-1), rcond=None)[0].reshape(d + 1, k)
  return w[:d], w[d]


def test_logistic_regression_equals_newton_reference():
  rng = np.random.RandomState(0)
  x = rng.randn(40, 3).astype(np.float32)
  y = rng.randint(0, 3, 40)
  (p, _, _) = probe.logistic_regression(x, y, 3, l2=0.1, max_iters=500, tol=1e-7)
  w, b = _newton_logreg(x, y, 3, 0.1)
  np.testing.assert_allclose(np.asarray(p["w"]), w, atol=1e-4)
  np.testing.assert_allclose(np.asarray(p["b"]), b, atol=1e-4)


def test_probe_and_knn_on_separable_features():
  rng = np.random.RandomState(0)
  centres = rng.randn(5, 20) * 5
  ytr, yte = rng.randint(0, 5, 500), rng.randint(0, 5, 200)
  xtr = (centres[ytr] + rng.randn(500, 20)).astype(np.float32)
  xte = (centres[yte] + rng.randn(200, 20)).astype(np.float32)
  a, b = probe.standardise(xtr, xte)
  (p, _, _) = probe.logistic_regression(a, ytr, 5, l2=1e-4)
  assert np.mean(np.argmax(np.asarray(b @ p["w"] + p["b"]), -1) == yte) >= 0.99
  pred = probe.knn_predict(xtr, ytr, xte, k=20, temperature=0.1, num_classes=5, chunk=64)
  assert np.mean(np.asarray(pred) == yte) >= 0.99
  # Known answer: 1-NN returns the label of the most cosine-similar train row.
  tr = np.array([[1, 0], [0, 1], [-1, 0.1]], np.float32)
  te = np.array([[0.9, 0.2], [0.1, 2.0], [-3, 0]], np.float32)
  pred = probe.knn_predict(tr, np.array([0, 1, 2]), te, k=1, temperature=0.1, num_classes=3, chunk=2)
  np.testing.assert_array_equal(np.asarray(pred), [0, 1, 2])
  # k=3 weighted vote: two weak neighbours of class 1 lose to one near neighbour of class 0 at t=0.1.
  tr = np.array([[1, 0], [0.2, 1], [0.3, 1]], np.float32)
  pred = probe.knn_predict(tr, np.array([0, 1, 1]), np.array([[1, 0.05]], np.float32), k=3,
                           temperature=0.1, num_classes=2)
  assert int(pred[0]) == 0


def test_config_errors():
  c = load_config_file("configs/simclr/cifar10.py:tiny")
  simclr.SimCLR(c).validate()
  for key, value, word in [("simclr.temperature", 0.0, "temperature"), ("simclr.lr_scaling", "log", "lr_scaling"),
                           ("model.depth", 19, "depth"), ("model.stem", "x", "stem")]:
    bad = load_config_file("configs/simclr/cifar10.py:tiny")
    section, name = key.split(".")
    bad[section][name] = value
    with pytest.raises(ConfigError, match=word):
      simclr.SimCLR(bad)
  bad = load_config_file("configs/simclr/cifar10.py:tiny")
  bad.eval.knn.k = 0
  from jaxgen import evaluators
  with pytest.raises(ConfigError, match="knn.k"):
    evaluators.validate(bad, can_sample=False)
