"""Learning to Forget: attenuation of the meta-initialisation theta before the inner loop.

L2F (Baik, Hong, Lee, CVPR 2020, Sec. 4) computes, for each task,

  g      = d L_support(f_theta) / d theta      (held constant: no second-order graph)
  e      = [mean(g^1), ..., mean(g^L)]           (one number per parameter tensor, "layer")
  gamma  = sigmoid(MLP_phi(e))                   (MLP: Dense(L) -> ReLU -> Dense(L))
  theta_bar^j = gamma^j * theta^j

and the inner loop starts from theta_bar; the query loss trains theta and phi. The paper's
ablations are configurations: Table 6's transforms (``transform`` "sigmoid" = L2F,
"unconstrained", "affine"), Table 5's prototype embedding, and Table 4's task-independent
attenuation initialised at 1 (:class:`TaskIndependentAttenuation`, by ``scope``).

Each attenuation is a Keras layer whose weights (phi) the outer loop trains;
``attenuate(theta, embedding)`` returns (theta_bar tensors, gamma: the values to log).
"""

from typing import Sequence

import gin
import keras
import tensorflow as tf

TRANSFORMS = ("sigmoid", "unconstrained", "affine")
EMBEDDINGS = ("gradient_mean", "prototype_mean")
SCOPES = ("network", "layer", "filter", "parameter")


def gradient_mean_embedding(support_gradients: Sequence[tf.Tensor]) -> tf.Tensor:
  """Task embedding e: the mean of each gradient tensor, held constant (stop_gradient)."""
  return tf.stack([tf.reduce_mean(tf.stop_gradient(g)) for g in support_gradients])


def prototype_mean_embedding(features: tf.Tensor, labels: tf.Tensor,
                             num_classes: int) -> tf.Tensor:
  """Table 5's task embedding [D], held constant: the mean over the N classes of each class's
  mean support feature (penultimate layer at theta, ``features`` [N*K, D], ``labels`` [N*K])."""
  prototypes = tf.math.unsorted_segment_mean(tf.stop_gradient(features),
                                             tf.cast(labels, tf.int32), num_classes)
  return tf.reduce_mean(prototypes, axis=0)


class Attenuation(keras.layers.Layer):
  """Maps theta (and the task embedding) to theta_bar. Subclasses set
  ``needs_support_gradients`` or ``needs_support_features`` and implement
  ``build_for(param_shapes, embedding_dim=None)`` (create phi) and
  ``attenuate(params, embedding=None) -> (theta_bar, gamma [L])``.
  """

  needs_support_gradients = False
  needs_support_features = False

  @property
  def method_name(self) -> str:
    """The variant's name in results tables ("L2F", "task-independent(layer)", ...)."""
    return type(self).__name__


class TaskConditionedAttenuation(Attenuation):
  """L2F: gamma from an MLP of the task's mean support gradients (one gamma per tensor).

  Args:
    transform: "sigmoid" (L2F, gamma in (0, 1)), "unconstrained" (gamma is the MLP output), or
      "affine" (the MLP outputs gamma and delta; theta_bar = gamma * theta + delta).
    hidden_units: width of the hidden layer; None means L (the number of tensors).
    embedding: the MLP's input: "gradient_mean" (L2F) or "prototype_mean" (Table 5).
  """

  def __init__(self, transform: str = "sigmoid", hidden_units=None,
               embedding: str = "gradient_mean", **kwargs):
    super().__init__(**kwargs)
    if transform not in TRANSFORMS:
      raise ValueError(f"TaskConditionedAttenuation.transform must be one of {TRANSFORMS}, "
                       f"got {transform!r}.")
    if embedding not in EMBEDDINGS:
      raise ValueError(f"TaskConditionedAttenuation.embedding must be one of {EMBEDDINGS}, "
                       f"got {embedding!r}.")
    self.transform, self.hidden_units, self.embedding = transform, hidden_units, embedding
    self.needs_support_gradients = embedding == "gradient_mean"
    self.needs_support_features = embedding == "prototype_mean"

  @property
  def method_name(self) -> str:
    return "L2F" if self.transform == "sigmoid" else f"task-conditioned({self.transform})"

  def build_for(self, param_shapes, embedding_dim=None):
    num_tensors = len(param_shapes)
    if self.needs_support_features and not embedding_dim:
      raise ValueError("The prototype-mean embedding needs the feature size (embedding_dim).")
    inputs = embedding_dim if self.needs_support_features else num_tensors
    outputs = 2 * num_tensors if self.transform == "affine" else num_tensors
    self.num_tensors = num_tensors
    # In the variables' dtype (float32 under mixed precision): tiny, and gamma scales theta.
    self.hidden = keras.layers.Dense(self.hidden_units or num_tensors, activation="relu",
                                     dtype=self.dtype, name="attenuator_hidden")
    self.out = keras.layers.Dense(outputs, dtype=self.dtype, name="attenuator_out")
    self.hidden.build((1, inputs))
    self.out.build((1, self.hidden.units))
    self.built = True

  def gamma_from_embedding(self, embedding: tf.Tensor):
    """MLP_phi(e) -> (gamma [L], delta [L] or None)."""
    raw = self.out(self.hidden(embedding[None, :]))[0]
    if self.transform == "sigmoid":
      return tf.sigmoid(raw), None
    if self.transform == "unconstrained":
      return raw, None
    return raw[:self.num_tensors], raw[self.num_tensors:]

  def attenuate(self, params, embedding=None):
    """theta_bar^j = gamma^j * theta^j (+ delta^j if affine), for the task ``embedding``
    (``MetaLearner.task_embedding``)."""
    if embedding is None:
      raise ValueError(f"The {self.embedding} attenuation needs a task embedding.")
    gamma, delta = self.gamma_from_embedding(tf.cast(embedding, self.dtype))
    theta_bar = [tf.cast(gamma[j], p.dtype) * p for j, p in enumerate(params)]
    if delta is not None:
      theta_bar = [t + tf.cast(delta[j], t.dtype) for j, t in enumerate(theta_bar)]
    return theta_bar, gamma


class TaskIndependentAttenuation(Attenuation):
  """Learnable attenuation shared by all tasks, initialised at 1 (Table 4 of the paper).

  Args:
    scope: "network" (one scalar), "layer" (one per tensor), "filter" (one per entry of a
      tensor's last axis) or "parameter" (one per weight).
  """

  def __init__(self, scope: str = "layer", **kwargs):
    super().__init__(**kwargs)
    if scope not in SCOPES:
      raise ValueError(f"TaskIndependentAttenuation.scope must be one of {SCOPES}, got {scope!r}.")
    self.scope = scope

  @property
  def method_name(self) -> str:
    return f"task-independent({self.scope})"

  def build_for(self, param_shapes, embedding_dim=None):
    del embedding_dim  # No task embedding.
    ones = keras.initializers.Ones()
    if self.scope == "network":
      self.factors = [self.add_weight(shape=(), initializer=ones, name="attenuation")]
    elif self.scope == "layer":
      self.factors = [self.add_weight(shape=(), initializer=ones, name=f"attenuation_{j}")
                      for j in range(len(param_shapes))]
    else:
      self.factors = [
          self.add_weight(shape=tuple(shape[-1:]) if self.scope == "filter" else tuple(shape),
                          initializer=ones, name=f"attenuation_{j}")
          for j, shape in enumerate(param_shapes)]
    self.built = True

  def attenuate(self, params, embedding=None):
    del embedding  # Task-independent.
    factors = [f.value for f in self.factors]
    if self.scope == "network":
      factors = factors * len(params)
    theta_bar = [tf.cast(a, p.dtype) * p for a, p in zip(factors, params)]
    gamma = tf.stack([tf.reduce_mean(a) for a in factors])
    return theta_bar, gamma


# Keras inspects a layer's __init__ signature, which gin's wrapping changes; so gin configures
# these factories rather than the layer classes.
@gin.configurable
def task_conditioned_attenuation(transform: str = "sigmoid", hidden_units=None,
                                 embedding: str = "gradient_mean",
                                 dtype=None) -> TaskConditionedAttenuation:
  """L2F and its Table 5-6 variants, for gin: ``@task_conditioned_attenuation()``."""
  return TaskConditionedAttenuation(transform=transform, hidden_units=hidden_units,
                                    embedding=embedding, dtype=dtype)


@gin.configurable
def task_independent_attenuation(scope: str = "layer", dtype=None) -> TaskIndependentAttenuation:
  """Table 4's task-independent attenuation, for gin: ``@task_independent_attenuation()``."""
  return TaskIndependentAttenuation(scope=scope, dtype=dtype)
