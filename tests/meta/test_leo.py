"""LEO and LEO+L2F: meta-gradients against finite differences (float64), hand-computed inner
steps, the pieces of the meta-loss, and training-time randomness from the seed.

The finite differences only evaluate the meta-loss (forward values), so they are independent
of the gradient code they check. Sampling and dropout are switched off (``sample=False``,
deterministic meta-loss); the L2F task embeddings (support gradients at each start) are held at
their base-point values, as they are constants of the meta-gradient; first order also holds the
inner loop's gradients constant, which is what dropping the second-order terms means. Checked
on every path that computes a LEO meta-gradient: a tape around ``LEO.meta_loss`` eager, in
``tf.function`` and XLA-compiled.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data.episode import Episode
from l2f_tf.domains.few_shot import accuracy, cross_entropy
from l2f_tf.meta.leo import (LEO, Constants, LEOAttenuation, gaussian_parameters,
                             orthogonality, sample_kl)
from l2f_tf.models.leo_network import LEONetwork
from tests.gradient_check import analytic_meta_gradient, assert_matches_reference, \
    directional_derivatives

N, K, Q, D, L, T = 2, 2, 3, 6, 3, 2


def make_leo(attenuation=None, dtype="float64", sample=False, dropout_rate=0.0, seed=0,
             **kwargs):
  keras.utils.set_random_seed(1)
  network = LEONetwork(N, D, num_latents=L, dtype=dtype)
  if attenuation is not None:
    attenuation = LEOAttenuation(dtype=dtype, **attenuation)
  learner = LEO(network, cross_entropy, accuracy, num_latent_steps=2, num_finetuning_steps=2,
                latent_lr=0.5, finetuning_lr=0.3, dropout_rate=dropout_rate,
                kl_weight=0.1, encoder_penalty_weight=0.2, l2_penalty_weight=0.05,
                orthogonality_penalty_weight=0.1, attenuation=attenuation, sample=sample,
                seed=seed, **kwargs)
  # Learning rates and attenuator away from their initial values, so every term is generic.
  rng = np.random.default_rng(7)
  for v in learner.inner_lr_variables:
    v.assign(v.numpy() * rng.uniform(0.5, 1.5, size=v.shape))
  for v in learner.attenuator_variables:
    v.assign(v.numpy() + rng.normal(scale=0.3, size=v.shape))
  return learner


def make_batch(dtype=np.float64, seed=3):
  rng = np.random.default_rng(seed)
  x = lambda m: rng.normal(size=(T, N * m, D)).astype(dtype)
  y = lambda m: np.tile(np.repeat(np.arange(N, dtype=np.int32), m), (T, 1))
  # Shuffled labels: LEO groups the support set by class itself.
  order = rng.permutation(N * K)
  sx, sy = x(K), y(K)
  return Episode(tf.constant(sx[:, order]), tf.constant(sy[:, order]), tf.constant(x(Q)),
                 tf.constant(y(Q)))


def base_constants(learner, batch, first_order):
  """The attenuation's support gradients, the adapted codes (and first order: the inner
  gradients) of every task at the current weights, as constants."""
  result = learner.adapt_tasks(batch.support_x, batch.support_y, learner.num_inner_steps,
                               first_order=first_order)
  constant = lambda t: tf.constant(t.numpy())
  gradients = [constant(g) for g in result.gradients] if first_order else None
  return Constants({k: constant(v) for k, v in result.embeddings.items()},
                   constant(result.adapted_latents), gradients)


def value_fn(learner, batch, constants):
  return tf.function(lambda: learner.meta_loss(batch, training=False, constants=constants)[0])


class Deterministic:
  """The learner as the gradient helpers expect: ``meta_loss`` without randomness."""

  def __init__(self, learner):
    self.learner, self.meta_variables = learner, learner.meta_variables
    self.vectorize_tasks = learner.vectorize_tasks

  def meta_loss(self, episodes, first_order=False):
    return self.learner.meta_loss(episodes, first_order=first_order, training=False)


VARIANTS = {
    "leo": None,
    "leo_l2f": {},
    "leo_l2f_tensor": {"granularity": "tensor"},
    "leo_l2f_latents": {"points": ("latents",)},
}


# Every variant eagerly; the compiled paths on LEO and on LEO+L2F's default.
CASES = [(v, "plain") for v in sorted(VARIANTS)] + [
    (v, p) for v in ("leo", "leo_l2f") for p in ("compiled", "xla")]


@functools.lru_cache(maxsize=None)
def reference(variant: str, first_order: bool):
  """The finite differences of a variant's meta-loss, computed once for its paths."""
  learner = make_leo(VARIANTS[variant])
  batch = make_batch()
  return directional_derivatives(value_fn(learner, batch, base_constants(learner, batch,
                                                                          first_order)),
                                 learner.meta_variables, seed=11)


@pytest.mark.parametrize("variant,path", CASES)
@pytest.mark.parametrize("first_order", [False, True], ids=["second_order", "first_order"])
def test_meta_gradient_matches_finite_differences(variant, path, first_order):
  learner = make_leo(VARIANTS[variant])
  batch = make_batch()
  analytic = analytic_meta_gradient(Deterministic(learner), batch, path, first_order)
  rows = reference(variant, first_order)
  assert len(rows) == len(learner.meta_variables) >= 7
  assert_matches_reference(analytic, rows, rtol=1e-6)


def test_second_order_differs_from_first_order():
  """The check above could pass twice with one path if second order were first order."""
  learner = make_leo({})
  batch = make_batch()
  second = analytic_meta_gradient(Deterministic(learner), batch, "plain", False)
  first = analytic_meta_gradient(Deterministic(learner), batch, "plain", True)
  assert max(np.abs(a - b).max() for a, b in zip(second, first)) > 1e-4


# --- inner steps by hand ----------------------------------------------------------------------
def softmax(logits):
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_inner_steps_match_hand_computation():
  """One latent step and one fine-tuning step in numpy, from LEO's equations (test mode:
  means, no dropout): z' = z - alpha_z * dL/dz, w' = w - alpha_w * dL/dw, L the SUM of the
  support cross-entropies, logits x . mean_k w_nk."""
  learner = make_leo(None)
  learner.num_latent_steps, learner.num_finetuning_steps = 1, 1
  learner.num_inner_steps = 2
  batch = make_batch()
  sx, sy = batch.support_x[0].numpy(), batch.support_y[0].numpy()
  net = learner.model
  enc, dec = net.encoder.numpy(), net.decoder.numpy()
  rel = [w.numpy() for w in net.relation]
  x = np.stack([sx[sy == n] for n in range(N)])                         # [N, K, D]
  codes = (x @ enc).reshape(N * K, L)
  pairs = np.concatenate([np.repeat(codes[:, None], N * K, 1),
                          np.repeat(codes[None], N * K, 0)], -1)
  h = pairs
  for i, w in enumerate(rel):
    h = h @ w
    h = np.maximum(h, 0) if i < len(rel) - 1 else h
  related = h.mean(1).reshape(N, K, 2 * L).mean(1)                     # [N, 2L]
  z = np.repeat(related[:, None, :L], K, 1)                             # means: [N, K, L]
  dec_mean = dec[:, :D]
  onehot = np.eye(N)[np.repeat(np.arange(N), K)]

  def grad_wbar(wbar):  # d sum CE / d wbar, wbar [N, D]
    p = softmax(x.reshape(N * K, D) @ wbar.T)
    return (p - onehot).T @ x.reshape(N * K, D)

  w = z @ dec_mean                                                      # [N, K, D]
  g_w = np.repeat(grad_wbar(w.mean(1))[:, None] / K, K, 1)             # d L / d w_nk
  g_z = g_w @ dec_mean.T
  z1 = z - learner.inner_lrs.latent.numpy() * g_z
  w1 = z1 @ dec_mean
  g_w1 = np.repeat(grad_wbar(w1.mean(1))[:, None] / K, K, 1)
  w2 = w1 - learner.inner_lrs.finetuning.numpy() * g_w1

  iterates = learner.adapt(batch.support_x[0], batch.support_y[0]).iterates
  assert len(iterates) == 3
  for got, want in zip(iterates, [w.mean(1), w1.mean(1), w2.mean(1)]):
    np.testing.assert_allclose(got[0].numpy(), want, rtol=1e-10, atol=1e-12)


def test_attenuation_multiplies_each_start_by_its_gamma():
  learner = make_leo({})
  batch = make_batch()
  result = learner.adapt_task(batch.support_x[0], batch.support_y[0], learner.num_inner_steps)
  assert set(result.embeddings) == {"latents", "weights"}
  assert result.gamma.shape == (2,)
  assert np.all((result.gamma.numpy() > 0) & (result.gamma.numpy() < 1))
  plain = make_leo(None)
  plain_start = plain.adapt(batch.support_x[0], batch.support_y[0]).iterates[0][0].numpy()
  att = learner.attenuation
  gamma_z = att.gamma("latents", att.embedding(result.embeddings["latents"][None]))[0].numpy()
  assert gamma_z.shape == (L,)
  # w_0 is linear in z_0 (test mode: the decoder's mean), so attenuating z_0 per latent
  # dimension maps to w_0 = (gamma_z * z_0) W_mean.
  z0 = np.linalg.lstsq(plain.model.decoder.numpy()[:, :D].T, plain_start.T, rcond=None)[0].T
  expected = (gamma_z * z0) @ plain.model.decoder.numpy()[:, :D]
  np.testing.assert_allclose(result.iterates[0][0].numpy(), expected, rtol=1e-8, atol=1e-10)


# --- pieces of the meta-loss ------------------------------------------------------------------
def test_gaussian_kl_and_orthogonality_by_hand():
  params = tf.constant([[0.3, -0.2, 0.5, 2.0]], tf.float64)
  mean, sigma = gaussian_parameters(params, stddev_offset=0.25)
  np.testing.assert_allclose(mean.numpy(), [[0.3, -0.2]])
  np.testing.assert_allclose(sigma.numpy(), [[np.exp(0.5) - 0.75, np.exp(2.0) - 0.75]])
  _, floor = gaussian_parameters(tf.constant([[0.0, -3.0]], tf.float64))
  assert floor.numpy()[0, 0] == pytest.approx(1e-10)
  s, m, sd = np.array([0.1, 1.2]), np.array([0.0, 1.0]), np.array([0.5, 2.0])
  log_q = -0.5 * ((s - m) / sd) ** 2 - np.log(sd)
  log_p = -0.5 * s ** 2
  assert float(sample_kl(tf.constant(s), tf.constant((s - m) / sd), tf.constant(sd))) == pytest.approx(
      np.mean(log_q - log_p))
  w = np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
  c = np.array([[1.0, 0.0], [0.0, 1.0]])  # orthogonal rows
  assert float(orthogonality(tf.constant(w))) == pytest.approx(np.mean((c - np.eye(2)) ** 2))
  w = np.array([[1.0, 1.0], [1.0, 0.0]])
  cos = 1 / np.sqrt(2)
  assert float(orthogonality(tf.constant(w))) == pytest.approx(2 * (cos ** 2) / 4)


def test_meta_loss_adds_every_term_with_its_weight():
  learner = make_leo(None)
  batch = make_batch()
  total, _ = learner.meta_loss(batch, training=False)
  query = []
  for t in range(T):
    result = learner.adapt_task(batch.support_x[t], batch.support_y[t], learner.num_inner_steps)
    logits = batch.query_x[t].numpy() @ result.iterates[-1][0].numpy().T
    p = softmax(logits)
    ce = -np.mean(np.log(p[np.arange(len(p)), batch.query_y[t].numpy()]))
    query.append(ce + 0.2 * float(result.encoder_penalty))
  l2 = sum(np.sum(w.numpy() ** 2) / 2 for w in learner.model.weight_matrices)
  dec = learner.model.decoder.numpy()
  unit = dec / np.linalg.norm(dec, axis=1, keepdims=True)
  ortho = np.mean((unit @ unit.T - np.eye(L)) ** 2)
  assert float(total) == pytest.approx(np.mean(query) + 0.05 * l2 + 0.1 * ortho, rel=1e-10)


# --- randomness -------------------------------------------------------------------------------
def test_training_randomness_comes_from_the_seed_and_the_checkpoint(tmp_path):
  batch = make_batch(np.float32)

  def losses(seed, calls=3):
    learner = make_leo({}, dtype="float32", sample=True, dropout_rate=0.5, seed=seed)
    return learner, [float(learner.meta_loss(batch)[0]) for _ in range(calls)]

  learner, first = losses(0)
  assert losses(0)[1] == first
  assert losses(1)[1] != first
  assert len(set(first)) == 3  # Each call draws new codes, weights and dropout masks.
  # The generator is saved with the checkpoint: restoring it replays the draws.
  checkpoint = tf.train.Checkpoint(rng=learner.rng)
  path = checkpoint.write(str(tmp_path / "rng"))
  after = float(learner.meta_loss(batch)[0])
  checkpoint.read(path).assert_consumed()
  assert float(learner.meta_loss(batch)[0]) == after


def test_evaluation_is_deterministic_and_counts_latent_then_finetuning_steps():
  learner = make_leo({}, dtype="float32", sample=True, dropout_rate=0.5)
  batch = make_batch(np.float32)
  a = learner.adapt(batch.support_x[0], batch.support_y[0])
  b = learner.adapt(batch.support_x[0], batch.support_y[0])
  assert len(a.iterates) == learner.num_inner_steps + 1 == 5
  for x, y in zip(a.iterates, b.iterates):
    np.testing.assert_array_equal(x[0].numpy(), y[0].numpy())
  two = learner.adapt(batch.support_x[0], batch.support_y[0], num_steps=2).iterates
  np.testing.assert_allclose(two[-1][0].numpy(), a.iterates[2][0].numpy(), rtol=1e-6)
  more = learner.adapt(batch.support_x[0], batch.support_y[0], num_steps=7).iterates
  assert len(more) == 8


def test_bad_settings_are_named():
  with pytest.raises(ValueError, match="points"):
    LEOAttenuation(points=("codes",))
  with pytest.raises(ValueError, match="granularity"):
    LEOAttenuation(granularity="layer")
  with pytest.raises(ValueError, match="leo_network"):
    LEO(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), cross_entropy)
  learner = make_leo(None)
  with pytest.raises(ValueError, match="N\\*K support examples"):
    learner.adapt(tf.zeros([3, D], tf.float64), tf.constant([0, 1, 0]))


def test_checkpoint_holds_every_variable(tmp_path):
  """Every meta-variable (and the generator) is in the checkpoint under its own key: a list of
  Keras variables on a layer is not tracked by TensorFlow checkpoints."""
  from l2f_tf.train import checkpoints  # pylint: disable=import-outside-toplevel
  learner = make_leo({})
  path = checkpoints.make_checkpoint(learner).write(str(tmp_path / "ckpt"))
  keys = [k for k in tf.train.load_checkpoint(path).get_variable_to_shape_map()
          if k.endswith("VARIABLE_VALUE")]
  assert len(keys) == len(learner.meta_variables) + 1  # + the generator's state
  values = [v.numpy() for v in learner.meta_variables]
  for v in learner.meta_variables:
    v.assign(tf.zeros_like(v))
  checkpoints.restore_weights(learner, path)
  for v, value in zip(learner.meta_variables, values):
    np.testing.assert_array_equal(v.numpy(), value, err_msg=v.path)
