"""batch_norm's three levels (forward, backward, backward of the backward): every first and
second partial derivative against central differences in float64, and the fused float32
kernels against the float64 closed forms."""

import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.models import batch_norm as bn

EPSILON = 1e-5


def inputs(shape=(3, 4, 5, 2), seed=0, dtype=np.float64):
  rng = np.random.default_rng(seed)
  channels = shape[-1]
  return (rng.normal(1.5, 2.0, size=shape).astype(dtype),
          rng.normal(1.0, 0.5, size=channels).astype(dtype),
          rng.normal(0.0, 0.5, size=channels).astype(dtype))


def directional_gradient(x, gamma, beta, weights, v):
  """<v, grad of sum(weights * sin(BN(x))) w.r.t. (x, gamma, beta)>: its gradient needs the
  backward pass's derivative with respect to dy, x and gamma, with all three cotangents. With
  ``v`` for x only, the gradient is taken w.r.t. x only, as MAML's inner loop does with an
  outer-loop-only batch norm: then dgamma and dbeta are unused (the shortcut path)."""
  with tf.GradientTape() as tape:
    tape.watch([x, gamma, beta])
    y = tf.reduce_sum(weights * tf.sin(bn.batch_norm(x, gamma, beta, EPSILON)))
  grads = tape.gradient(y, [x, gamma, beta][:len(v)])
  return sum(tf.reduce_sum(a * b) for a, b in zip(v, grads))


def second_order(x, gamma, beta, weights, v):
  with tf.GradientTape() as tape:
    tape.watch([x, gamma, beta])
    value = directional_gradient(x, gamma, beta, weights, v)
  return tape.gradient(value, [x, gamma, beta])


def random_like(arrays, seed):
  rng = np.random.default_rng(seed)
  return [tf.constant(rng.normal(size=tuple(a.shape)), tf.as_dtype(a.dtype)) for a in arrays]


@pytest.mark.parametrize("first_wrt", ["all", "x_only"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (7, 3)], ids=["nhwc", "rank2"])
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf_function"])
def test_second_derivatives_match_finite_differences_float64(shape, compiled, first_wrt):
  point = [tf.constant(a) for a in inputs(shape)]
  weights = random_like([np.zeros(shape)], 1)[0]
  v = random_like(point, 2)[:3 if first_wrt == "all" else 1]
  first = directional_gradient
  second = second_order
  if compiled:
    first, second = tf.function(first), tf.function(second)
  analytic = second(*point, weights, v)
  for trial in range(3):  # random directions in (x, gamma, beta) jointly and per input
    u = random_like(point, 10 + trial)
    if trial:
      u = [w if i == trial - 1 else tf.zeros_like(w) for i, w in enumerate(u)]
    h = 1e-6
    plus = first(*[p + h * d for p, d in zip(point, u)], weights, v)
    minus = first(*[p - h * d for p, d in zip(point, u)], weights, v)
    numeric = float(plus - minus) / (2 * h)
    projected = sum(float(tf.reduce_sum(a * d)) for a, d in zip(analytic, u))
    assert abs(projected - numeric) <= 1e-6 * max(1.0, abs(numeric)), (trial, projected, numeric)


def test_second_derivative_with_respect_to_gamma_is_not_zero():
  """The check above has teeth for gamma: its second-order terms are generic, not zero."""
  point = [tf.constant(a) for a in inputs()]
  weights = random_like([np.zeros(point[0].shape)], 1)[0]
  analytic = second_order(*point, weights, random_like(point, 2))
  assert all(float(tf.reduce_max(tf.abs(a))) > 1e-3 for a in analytic)


def test_fused_float32_kernels_match_the_float64_closed_forms():
  """Forward, gradient and second-order directional gradient of the fused float32 path (the
  CPU/GPU kernels) agree with the float64 path (ordinary ops, checked above)."""
  shape = (6, 9, 9, 4)
  x64, gamma64, beta64 = inputs(shape, seed=4)
  assert bn._kernels(tf.float32) is bn._FusedKernels  # pylint: disable=protected-access
  assert bn._kernels(tf.float64) is bn._PlainKernels  # pylint: disable=protected-access
  weights64 = random_like([np.zeros(shape)], 5)[0]
  v64 = random_like([x64, gamma64, beta64], 6)
  results = {}
  for dtype in (tf.float32, tf.float64):
    point = [tf.constant(a, dtype) for a in (x64, gamma64, beta64)]
    weights = tf.cast(weights64, dtype)
    v = [tf.cast(t, dtype) for t in v64]
    forward = bn.batch_norm(*point, EPSILON)
    with tf.GradientTape() as tape:
      tape.watch(point)
      y = tf.reduce_sum(weights * tf.sin(bn.batch_norm(*point, EPSILON)))
    gradient = tape.gradient(y, point)
    results[dtype.name] = [forward, *gradient, *second_order(*point, weights, v)]
  for ours, exact in zip(results["float32"], results["float64"]):
    exact = exact.numpy()
    scale = np.abs(exact).max()
    assert np.abs(ours.numpy() - exact).max() <= 2e-4 * scale


def test_fused_variance_is_the_biased_one():
  x = tf.constant(inputs((5, 4, 3, 2), seed=7, dtype=np.float32)[0])
  scale, offset = tf.ones([2]), tf.zeros([2])
  _, mean, variance, _ = bn._FusedKernels.forward(x, scale, offset, EPSILON)  # pylint: disable=protected-access
  _, mean64, variance64, _ = bn._PlainKernels.forward(  # pylint: disable=protected-access
      tf.cast(x, tf.float64), tf.ones([2], tf.float64), tf.zeros([2], tf.float64), EPSILON)
  np.testing.assert_allclose(mean.numpy(), mean64.numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(variance.numpy(), variance64.numpy(), rtol=1e-5)


def test_second_order_skips_the_kernel_for_zero_scale_and_offset_cotangents(monkeypatch):
  """When nothing uses the backward pass's dgamma and dbeta (batch norm is outer-loop only),
  the tape's zero cotangents are known while tracing and the backward-of-backward makes one
  forward-kernel and one backward-kernel call fewer; with non-zero ones it still makes them
  (the float64 tests above check both ways against finite differences)."""
  calls = {"forward": 0, "backward": 0}

  def counted(name):
    kernel = getattr(bn._FusedKernels, name)  # pylint: disable=protected-access

    def count(*args):
      calls[name] += 1
      return kernel(*args)

    return staticmethod(count)

  for name in calls:
    monkeypatch.setattr(bn._FusedKernels, name, counted(name))  # pylint: disable=protected-access
  x, gamma, beta = (tf.constant(a) for a in inputs(dtype=np.float32))

  @tf.function
  def hessian_vector(x):
    with tf.GradientTape() as outer:
      outer.watch(x)
      with tf.GradientTape() as inner:
        inner.watch(x)
        y = tf.reduce_sum(tf.sin(bn.batch_norm(x, gamma, beta, EPSILON)))
      dx = inner.gradient(y, x)
      z = tf.reduce_sum(dx * dx)
    return outer.gradient(z, x)

  hessian_vector(x)
  # forward: the layer, and the x_hat term of the second-order dx; backward: the layer's
  # gradient (inner tape), again for the outer tape's path through the layer, and the
  # second-order ddy (the second-order dx reuses it and the first: no call of its own)
  assert calls == {"forward": 2, "backward": 3}
  assert bn._known_zero(tf.zeros([3])) and not bn._known_zero(tf.ones([3]))  # pylint: disable=protected-access
