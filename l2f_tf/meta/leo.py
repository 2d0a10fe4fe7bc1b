"""LEO (Rusu et al., ICLR 2019) and LEO+L2F: adaptation in a learned latent space.

LEO does not adapt a shared initialisation of a network. For each N-way K-shot task on
pre-computed embeddings x (D-dim), with its networks (`l2f_tf.models.leo_network`):

  codes      c_nk = encode(dropout(x_nk))                            [N, K, L]
  relation   r_nk = mean_j MLP([c_nk, c_j])  over all N*K support examples j
  latent     (mu_n, sigma_n) = split(mean_k r_nk); z_nk ~ N(mu_n, sigma_n) (training; the mean
             at test), KL(z) = mean(log N(z; mu, sigma) - log N(z; 0, I)) (a one-sample estimate)
  weights    (m_nk, s_nk) = split(decode(z_nk)); w_nk ~ N(m_nk, s_nk) (training; the mean at test)
  logits     of an example x: x . w_n with w_n = mean_k w_nk (one weight vector per class)
  inner loop 5 steps on the codes: z <- z - alpha_z * d L_support(w(z)) / dz (decoding again
             each step), then 5 fine-tuning steps on the decoded weights:
             w <- w - alpha_w * d L_support(w) / dw
  meta-loss  L_query(w) + beta KL + gamma ||z_0 - stop_gradient(z_5)||^2 (mean) over the tasks'
             mean, + lambda_1 l2 of the networks + lambda_2 orthogonality of the decoder

Settings and details follow LEO's published code: the spreads are
``sigma = max(exp(raw) - (1 - offset), 1e-10)`` with offset 0 for the codes and
``sqrt(2 / (N + D))`` for the weights; the learning rates alpha_z (one per latent dimension,
initialised at 1) and alpha_w (one per embedding dimension, initialised at 0.001) are learned;
the inner-loop loss is the SUM of the support examples' cross-entropies (the reference
differentiates the vector of per-example losses, which sums them), the query loss their mean;
every (class, shot) pair carries its own code and weight sample, averaged into the class's
weight vector (so at test, where all K copies are equal, a step moves the class's code by
alpha / K times the gradient with respect to it); dropout (0.5) on the embeddings wherever
they enter in training (encoder, every support loss, the query loss).
l2 = sum of ||W||^2 / 2 over the networks' matrices; orthogonality = mean((C - I)^2) with C the
cosine-similarity matrix of the decoder's rows.

LEO+L2F (the L2F paper reports it but gives no formulas; this is our design). L2F attenuates
the point an inner loop starts from with gamma = sigmoid(MLP(mean support gradient)), computed
per task from the gradient at that point, held constant. LEO has two inner loops, so there are
two such points (``LEOAttenuation.points``): the latent codes z_0 before the latent loop, and
the decoded weights before fine-tuning. At each, the support-loss gradient at the start is
summarised by its mean, either per tensor (one gamma for the whole code / weight tensor, L2F's
"one gamma per layer") or per dimension (one gamma per latent / embedding dimension, the unit
LEO itself gives its own learning rate; the default), and start <- gamma * start. The
attenuator is trained by the meta-loss like LEO's networks. See docs/leo.md.

Randomness (codes and weights sampled, dropout) only exists in training (:meth:`LEO.meta_loss`)
and comes from a ``tf.random.Generator`` seeded by ``LEO.seed`` and saved with the checkpoint,
so a resumed run draws the same numbers as an uninterrupted one. :meth:`LEO.adapt` (evaluation,
export, the figures) is deterministic.
"""

import math
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import gin
import keras
import tensorflow as tf

from l2f_tf.meta.contract import Adaptation, LearnerBase

POINTS = ("latents", "weights")
GRANULARITIES = ("dimension", "tensor")


def gaussian_parameters(params: tf.Tensor, stddev_offset: float = 0.0):
  """[.., 2M] -> (mean [.., M], sigma [.., M]) with sigma = max(exp(raw) - (1 - offset), 1e-10)."""
  mean, raw = tf.split(params, 2, axis=-1)
  sigma = tf.maximum(tf.exp(raw) - (1.0 - stddev_offset), 1e-10)
  return mean, sigma


def sample_kl(samples: tf.Tensor, noise: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
  """One-sample estimate of KL(N(mean, sigma) || N(0, I)), averaged over the elements:
  mean(log N(s; mean, sigma) - log N(s; 0, 1)) for s = mean + sigma * noise.

  (s - mean) / sigma is written as the noise it equals: the same value and gradient, without
  dividing by a sigma at its floor of 1e-10 (where float32 overflowed in the gradient)."""
  log_q = -0.5 * tf.square(noise) - tf.math.log(sigma)
  log_p = -0.5 * tf.square(samples)
  return tf.reduce_mean(log_q - log_p)


def orthogonality(weight: tf.Tensor) -> tf.Tensor:
  """mean((C - I)^2) with C_ij the cosine similarity of rows i and j of ``weight``."""
  norms = tf.norm(weight, axis=1, keepdims=True) + 1e-32
  correlation = tf.matmul(weight, weight, transpose_b=True) / tf.matmul(norms, norms,
                                                                        transpose_b=True)
  identity = tf.eye(int(weight.shape[0]), dtype=weight.dtype)
  return tf.reduce_mean(tf.square(correlation - identity))


class Noise:
  """Training-time randomness of LEO from one ``tf.random.Generator``: dropout masks and
  standard normal draws. ``None`` in its place means evaluation (no dropout, means)."""

  def __init__(self, generator: tf.random.Generator, dropout_rate: float):
    self.generator, self.dropout_rate = generator, float(dropout_rate)

  def dropout(self, x: tf.Tensor) -> tf.Tensor:
    if self.dropout_rate <= 0.0:
      return x
    keep = self.generator.uniform(tf.shape(x), dtype=x.dtype) >= self.dropout_rate
    return tf.where(keep, x / (1.0 - self.dropout_rate), tf.zeros_like(x))

  def normal(self, like: tf.Tensor) -> tf.Tensor:
    return self.generator.normal(tf.shape(like), dtype=like.dtype)


class LEOLearningRates(keras.layers.Layer):
  """LEO's learned inner learning rates: one per latent dimension (initialised at
  ``latent_lr``) and one per embedding dimension for fine-tuning (at ``finetuning_lr``)."""

  def __init__(self, num_latents: int, embedding_dim: int, latent_lr: float,
               finetuning_lr: float, learn: bool = True, **kwargs):
    super().__init__(**kwargs)
    self.latent = self.add_weight(shape=(num_latents,), name="latent_lr", trainable=learn,
                                  initializer=keras.initializers.Constant(latent_lr))
    self.finetuning = self.add_weight(shape=(embedding_dim,), name="finetuning_lr",
                                      trainable=learn,
                                      initializer=keras.initializers.Constant(finetuning_lr))
    self.built = True


class LEOAttenuation(keras.layers.Layer):
  """L2F for LEO: gamma = sigmoid(MLP(mean support gradient)) times each inner loop's start.

  Args:
    points: where to attenuate: "latents" (the codes before the latent loop) and/or "weights"
      (the decoded weights before fine-tuning).
    granularity: "dimension" (one gamma per latent / embedding dimension, from the gradient's
      mean over classes and shots in that dimension) or "tensor" (one gamma per start tensor,
      from its gradient's overall mean: L2F's one gamma per layer).
    hidden_units: width of each MLP's hidden layer; None: the input size up to 64 (for
      "tensor": 1, as L2F's hidden layer has one unit per tensor).
  """

  def __init__(self, points: Sequence[str] = POINTS, granularity: str = "dimension",
               hidden_units: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    points = tuple(points)
    unknown = [p for p in points if p not in POINTS]
    if not points or unknown or len(set(points)) != len(points):
      raise ValueError(f"leo_attenuation.points must be a non-empty subset of {POINTS}, got "
                       f"{points!r}.")
    if granularity not in GRANULARITIES:
      raise ValueError(f"leo_attenuation.granularity must be one of {GRANULARITIES}, got "
                       f"{granularity!r}.")
    self.points = tuple(p for p in POINTS if p in points)
    self.granularity, self.hidden_units = granularity, hidden_units

  @property
  def method_name(self) -> str:
    name = "L2F" if self.granularity == "dimension" else "L2F(tensor)"
    return name if self.points == POINTS else f"{name}[{self.points[0]} only]"

  def build_for(self, num_latents: int, embedding_dim: int) -> None:
    sizes = {"latents": num_latents, "weights": embedding_dim}
    for point in self.points:
      inputs = 1 if self.granularity == "tensor" else sizes[point]
      hidden = self.hidden_units or min(inputs, 64)
      dense_in = keras.layers.Dense(hidden, activation="relu", dtype=self.dtype,
                                    name=f"{point}_hidden")
      dense_out = keras.layers.Dense(inputs, dtype=self.dtype, name=f"{point}_out")
      dense_in.build((1, inputs))
      dense_out.build((1, hidden))
      setattr(self, f"{point}_hidden", dense_in)
      setattr(self, f"{point}_out", dense_out)
    self.built = True

  def embedding(self, gradient: tf.Tensor) -> tf.Tensor:
    """The task embeddings of the support gradients [T, N, K, M] of T tasks' starts (held
    constant): each task's mean gradient, overall ([T, 1]) or per dimension ([T, M])."""
    gradient = tf.stop_gradient(gradient)
    axes = [1, 2, 3] if self.granularity == "tensor" else [1, 2]
    embedding = tf.reduce_mean(gradient, axis=axes)
    return embedding[:, None] if self.granularity == "tensor" else embedding

  def gamma(self, point: str, embedding: tf.Tensor) -> tf.Tensor:
    """sigmoid(MLP(embedding)): [T, 1] or [T, M]."""
    hidden, out = getattr(self, f"{point}_hidden"), getattr(self, f"{point}_out")
    return tf.sigmoid(out(hidden(tf.cast(embedding, self.dtype))))

  def attenuate(self, point: str, start: tf.Tensor, gradient: tf.Tensor):
    """(gamma * start, gamma) for one point of T tasks: start [T, N, K, M], gamma [T, 1] or
    [T, M] (one per task and tensor or dimension), broadcast over classes and shots."""
    gamma = self.gamma(point, self.embedding(gradient))
    return tf.cast(gamma, start.dtype)[:, None, None, :] * start, gamma


@gin.configurable
def leo_attenuation(points: Sequence[str] = POINTS, granularity: str = "dimension",
                    hidden_units: Optional[int] = None) -> LEOAttenuation:
  """LEO+L2F's attenuation for gin: ``LEO.attenuation = @leo_attenuation()``."""
  return LEOAttenuation(points=points, granularity=granularity, hidden_units=hidden_units)


class TaskResult(NamedTuple):
  """One task's adaptation with everything the meta-loss needs.

  Attributes:
    iterates: [w_0], [w_1], ...: each class's weight vectors [N, D] after 0, 1, ... steps.
    gamma: the mean gamma of each attenuated point, [P], or None (LEO).
    kl: the KL estimate of the sampled codes (0 in evaluation).
    encoder_penalty: mean((z_0 - stop_gradient(z_end))^2) of the latent loop.
    embeddings: point -> the support gradient its gamma was computed from (a constant).
    gradients: the inner loop's gradients, latent steps then fine-tuning steps.
    adapted_latents: the codes after the latent loop (the encoder penalty's constant target).
  """
  iterates: List[List[tf.Tensor]]
  gamma: Optional[tf.Tensor]
  kl: tf.Tensor
  encoder_penalty: tf.Tensor
  embeddings: Dict[str, tf.Tensor]
  gradients: List[tf.Tensor]
  adapted_latents: tf.Tensor


class Constants(NamedTuple):
  """Values :meth:`LEO.adapt_task` uses instead of computing them (the finite-difference
  tests hold them at a base point): the attenuation's support gradients by point, the encoder
  penalty's target (the adapted codes, a constant of the meta-gradient) and, for first order,
  the inner loop's gradients (None: computed)."""
  embeddings: Dict[str, tf.Tensor]
  adapted_latents: tf.Tensor
  gradients: Optional[List[tf.Tensor]] = None


@gin.configurable
class LEO(LearnerBase):
  """LEO, or LEO+L2F with an ``attenuation``; a :class:`~l2f_tf.meta.contract.Learner`.

  Args:
    model: a `l2f_tf.models.leo_network.LEONetwork` (encoder, relation network, decoder).
    loss_fn: ``loss_fn(labels, logits)``, the mean query loss of one task (cross-entropy).
    metric_fn: ``metric_fn(labels, logits)`` of one task (accuracy), logged per inner step.
    num_latent_steps: gradient steps on the latent codes (5).
    num_finetuning_steps: gradient steps on the decoded weights after them (5).
    latent_lr: initial learning rate of the latent steps (1.0), per latent dimension.
    finetuning_lr: initial learning rate of fine-tuning (0.001), per embedding dimension.
    learn_inner_lr: learn both learning rates (LEO does).
    dropout_rate: dropout on the embeddings in training (0.5).
    kl_weight: beta, weight of the codes' KL to N(0, I) (1e-3).
    encoder_penalty_weight: gamma, weight of the codes' distance to their adapted values (1e-9).
    l2_penalty_weight: lambda_1, weight of the networks' l2 (1e-8).
    orthogonality_penalty_weight: lambda_2, weight of the decoder's orthogonality (1e-3).
    attenuation: a :class:`LEOAttenuation` (LEO+L2F) or None (LEO).
    sample: sample codes and weights in training (LEO); False uses the means (the gradient
      tests switch sampling and dropout off to compare with finite differences).
    seed: seed of the training-time randomness.
  """

  family = "LEO"
  supports_sequential_tasks = False  # Trainer.sequential_tasks needs MetaLearner's structure.
  supports_landscape = False  # The landscape measures probe a single inner loop over theta.

  def __init__(self, model, loss_fn: Callable, metric_fn: Optional[Callable] = None,
               num_latent_steps: int = 5, num_finetuning_steps: int = 5,
               latent_lr: float = 1.0, finetuning_lr: float = 0.001,
               learn_inner_lr: bool = True, dropout_rate: float = 0.5,
               kl_weight: float = 1e-3, encoder_penalty_weight: float = 1e-9,
               l2_penalty_weight: float = 1e-8, orthogonality_penalty_weight: float = 1e-3,
               attenuation: Optional[LEOAttenuation] = None, sample: bool = True,
               seed: int = 0):
    for name in ("encode", "relate", "decode", "num_classes", "embedding_dim", "num_latents"):
      if not hasattr(model, name):
        raise ValueError(f"LEO needs LEO's networks (bind FewShotEmbeddings.network = "
                         f"@leo_network); got {type(model).__name__}, which has no {name!r}.")
    if num_latent_steps < 0 or num_finetuning_steps < 0:
      raise ValueError("LEO.num_latent_steps and LEO.num_finetuning_steps must be >= 0, got "
                       f"{num_latent_steps} and {num_finetuning_steps}.")
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f"LEO.dropout_rate must be in [0, 1), got {dropout_rate}.")
    self.model, self.loss_fn, self.metric_fn = model, loss_fn, metric_fn
    self.num_classes, self.embedding_dim = model.num_classes, model.embedding_dim
    self.num_latents = model.num_latents
    self.num_latent_steps, self.num_finetuning_steps = num_latent_steps, num_finetuning_steps
    self.num_inner_steps = num_latent_steps + num_finetuning_steps
    self.dropout_rate = dropout_rate
    self.kl_weight, self.encoder_penalty_weight = kl_weight, encoder_penalty_weight
    self.l2_penalty_weight = l2_penalty_weight
    self.orthogonality_penalty_weight = orthogonality_penalty_weight
    self.sample, self.seed = sample, seed
    self.dtype = tf.as_dtype(model.encoder.dtype)
    self.inner_lrs = LEOLearningRates(self.num_latents, self.embedding_dim, latent_lr,
                                      finetuning_lr, learn_inner_lr, dtype=self.dtype.name,
                                      name="leo_inner_lrs")
    self.attenuation = attenuation
    if attenuation is not None:
      attenuation.build_for(self.num_latents, self.embedding_dim)
    self.rng = tf.random.Generator.from_seed(seed)
    self.weight_stddev_offset = math.sqrt(2.0 / (self.num_classes + self.embedding_dim))

  # --- variables -------------------------------------------------------------------------------
  @property
  def inner_variables(self) -> List[keras.Variable]:
    """LEO's network matrices: what maps a task to its starting point (the per-tensor
    summaries, e.g. the degree of conflict, are about them)."""
    return list(self.model.weight_matrices)

  @property
  def num_outputs(self) -> int:
    return self.num_classes

  @property
  def gamma_names(self) -> List[str]:
    """One logged gamma per attenuated point."""
    return list(self.attenuation.points) if self.attenuation is not None else []

  @property
  def network_variables(self) -> List[keras.Variable]:
    """What the trainer's meta-gradient clipping applies to: everything, as in LEO's published
    code (element-wise, then per-tensor norm)."""
    return self.meta_variables

  def checkpoint_parts(self):
    """The weights, and the training randomness's state (a resumed run draws the same
    numbers)."""
    return {**super().checkpoint_parts(), "rng": self.rng}

  # --- pieces ----------------------------------------------------------------------------------
  def forward(self, params: Sequence[tf.Tensor], x: tf.Tensor, training: bool = False,
              support_x: Optional[tf.Tensor] = None):
    """Logits of embeddings ``x`` [Q, D] for class weight vectors ``params[0]`` [N, D] (each
    query on its own: ``support_x`` is not needed)."""
    del training, support_x  # LEO's test-time forward pass has no randomness.
    return tf.matmul(tf.cast(x, self.dtype), params[0], transpose_b=True)

  def _shots(self, total: Optional[int]) -> int:
    """K of a support set of ``total`` = N*K examples, or a ValueError naming the problem."""
    if total is None or total % self.num_classes:
      raise ValueError(f"LEO needs N*K support examples with K per class for "
                       f"N={self.num_classes} classes; got a support set of {total}.")
    return total // self.num_classes

  def _by_class(self, support_x, support_y) -> tf.Tensor:
    """Support embeddings [T, N*K, D] -> [T, N, K, D], class n holding the examples labelled n
    (every class needs K examples)."""
    k = self._shots(support_x.shape[1])
    order = tf.argsort(tf.cast(support_y, tf.int32), axis=-1, stable=True)
    x = tf.gather(tf.cast(support_x, self.dtype), order, batch_dims=1)
    return tf.reshape(x, [-1, self.num_classes, k, self.embedding_dim])

  def _check_balanced(self, support_x, support_y) -> tf.Tensor:
    """``support_x``, after checking (in the graph) that each of the N classes has K support
    examples: LEO groups the support set by label, so another count would mix classes."""
    n, k = self.num_classes, self._shots(support_x.shape[0])
    counts = tf.math.bincount(tf.cast(support_y, tf.int32), minlength=n, maxlength=n)
    check = tf.debugging.Assert(
        tf.reduce_all(tf.equal(counts, k)),
        [f"LEO needs exactly K={k} support examples of each of the {n} classes (labels 0.."
         f"{n - 1}); got per class", counts], summarize=n)
    with tf.control_dependencies([check]):
      return tf.identity(support_x)

  def _support_loss(self, x, weights, noise: Optional[Noise]) -> tf.Tensor:
    """Sum over the tasks and their support examples [T, N, K, D] of the cross-entropy of logits
    x . mean_k w_nk (weights [T, N, K, D]), labels the class index. Tasks are independent, so
    its gradient with respect to a task's codes or weights is that task's inner gradient."""
    if noise is not None:
      x = noise.dropout(x)
    logits = tf.einsum("tnkd,tcd->tnkc", x, tf.reduce_mean(weights, axis=2))
    labels = tf.broadcast_to(tf.range(self.num_classes)[:, None], tf.shape(logits)[:-1])
    return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                        logits=logits))

  def _decode(self, z, noise: Optional[Noise]) -> tf.Tensor:
    """Codes [T, N, K, L] -> classifier weights [T, N, K, D] (sampled in training)."""
    mean, sigma = gaussian_parameters(self.model.decode(z), self.weight_stddev_offset)
    if noise is None or not self.sample:
      return mean
    return mean + sigma * noise.normal(mean)

  def _encode(self, x, noise: Optional[Noise]) -> Tuple[tf.Tensor, tf.Tensor]:
    """Support embeddings [T, N, K, D] -> (codes z_0 [T, N, K, L], KL estimate per task [T])."""
    n, k, latents = self.num_classes, x.shape[2], self.num_latents
    codes = self.model.encode(noise.dropout(x) if noise is not None else x)
    related = self.model.relate(tf.reshape(codes, [-1, n * k, latents]))
    per_class = tf.reduce_mean(tf.reshape(related, [-1, n, k, 2 * latents]), axis=2,
                               keepdims=True)
    mean, sigma = gaussian_parameters(tf.tile(per_class, [1, 1, k, 1]))
    if noise is None or not self.sample:
      return mean, tf.zeros(tf.shape(mean)[:1], self.dtype)
    epsilon = noise.normal(mean)
    z = mean + sigma * epsilon
    return z, sample_kl(z, epsilon, sigma)

  @staticmethod
  def _gradient(loss_fn, point):
    """d loss_fn(point) / d point, with its second-order graph."""
    with tf.GradientTape() as tape:
      tape.watch(point)
      loss = loss_fn(point)
    return tape.gradient(loss, point)

  def _attenuate(self, name, start, loss_fn, gammas, embeddings, constants):
    """``start`` attenuated at point ``name`` if the attenuation has it (each task's mean gamma
    appended, the support gradient it came from stored in ``embeddings``)."""
    if self.attenuation is None or name not in self.attenuation.points:
      return start
    if constants is not None:
      gradient = constants.embeddings[name]
    else:
      gradient = tf.stop_gradient(self._gradient(loss_fn, tf.stop_gradient(start)))
    embeddings[name] = gradient
    start, gamma = self.attenuation.attenuate(name, start, gradient)
    gammas.append(tf.reduce_mean(gamma, axis=-1))
    return start

  def _step_gradient(self, gradient_fn, first_order, gradients, constants):
    """The inner gradient ``gradient_fn()`` (or the constant one being replayed), stored;
    second order unless ``first_order``."""
    if constants is not None and constants.gradients is not None:
      gradient = constants.gradients[len(gradients)]
    else:
      gradient = gradient_fn()
      gradient = tf.stop_gradient(gradient) if first_order else gradient
    gradients.append(gradient)
    return gradient

  def adapt_tasks(self, support_x, support_y, num_steps: int, first_order: bool = False,
                  noise: Optional[Noise] = None,
                  constants: Optional[Constants] = None) -> TaskResult:
    """Both inner loops of a batch of tasks (support_x [T, N*K, D], support_y [T, N*K]), all at
    once; ``num_steps`` counts latent steps, then fine-tuning steps. Every field of the result
    has the leading task axis.

    ``noise``: training randomness (None: deterministic); ``constants``: values to use instead
    of the attenuation's and (first order) the inner loop's gradients."""
    x = self._by_class(support_x, support_y)
    latent_steps = min(num_steps, self.num_latent_steps)
    finetuning_steps = num_steps - latent_steps
    gammas, embeddings, gradients = [], {}, []
    z, kl = self._encode(x, noise)
    weights_loss = lambda w: self._support_loss(x, w, noise)
    latent_loss = lambda z: weights_loss(self._decode(z, noise))
    z = self._attenuate("latents", z, latent_loss, gammas, embeddings, constants)
    z_start = z
    alpha_z, alpha_w = self.inner_lrs.latent.value, self.inner_lrs.finetuning.value
    iterates = []
    for _ in range(latent_steps):
      # Decoded once per step: the step's weights (sampled in training) are the iterate and
      # the point whose support loss is differentiated.
      with tf.GradientTape() as tape:
        tape.watch(z)
        weights = self._decode(z, noise)
        loss = weights_loss(weights)
      iterates.append([tf.reduce_mean(weights, axis=2)])
      z = z - alpha_z * self._step_gradient(lambda: tape.gradient(loss, z), first_order,
                                            gradients, constants)
    weights = self._decode(z, noise)
    target = tf.stop_gradient(z) if constants is None else constants.adapted_latents
    encoder_penalty = tf.reduce_mean(tf.square(z_start - target), axis=[1, 2, 3])
    if latent_steps == self.num_latent_steps:  # Fine-tuning starts here (iterate S).
      weights = self._attenuate("weights", weights, weights_loss, gammas, embeddings, constants)
    for _ in range(finetuning_steps):
      iterates.append([tf.reduce_mean(weights, axis=2)])
      weights = weights - alpha_w * self._step_gradient(
          lambda: self._gradient(weights_loss, weights), first_order, gradients,
          constants)
    iterates.append([tf.reduce_mean(weights, axis=2)])
    gamma = tf.stack(gammas, axis=-1) if gammas else None
    return TaskResult(iterates, gamma, kl, encoder_penalty, embeddings, gradients,
                      tf.stop_gradient(z))

  def adapt_task(self, support_x, support_y, num_steps: int, first_order: bool = False,
                 noise: Optional[Noise] = None,
                 constants: Optional[Constants] = None) -> TaskResult:
    """:meth:`adapt_tasks` for one task (no task axis, in and out)."""
    if constants is not None:
      constants = tf.nest.map_structure(lambda t: t[None], constants)
    result = self.adapt_tasks(support_x[None], support_y[None], num_steps, first_order, noise,
                              constants)
    return tf.nest.map_structure(lambda t: None if t is None else t[0], result)

  # --- the Learner contract --------------------------------------------------------------------
  def adapt(self, support_x, support_y, num_steps: Optional[int] = None,
            first_order: bool = False) -> Adaptation:
    """Adapts to one task without randomness (evaluation, export, figures).

    ``num_steps`` (default: all, ``num_latent_steps + num_finetuning_steps``) counts the latent
    steps first, then fine-tuning steps (more than ``num_finetuning_steps`` fine-tune further).
    Iterate k holds the class weight vectors [N, D] after k steps."""
    num_steps = self.num_inner_steps if num_steps is None else num_steps
    support_x = self._check_balanced(support_x, support_y)
    result = self.adapt_task(support_x, support_y, num_steps, first_order)
    return Adaptation(result.iterates, result.gamma)

  def attenuate(self, support_x, support_y):
    """(the class weights before any step, the gammas): what the figures draw for L2F."""
    result = self.adapt_task(support_x, support_y, self.num_inner_steps, True)
    return result.iterates[0], result.gamma

  def _logits(self, query_x, weights, noise: Optional[Noise] = None) -> tf.Tensor:
    """Logits [T, Q, N] of query_x [T, Q, D] for class weights [T, N, D]."""
    x = tf.cast(query_x, self.dtype)
    return tf.einsum("tqd,tnd->tqn", noise.dropout(x) if noise is not None else x, weights)

  @staticmethod
  def _per_task(fn, labels, logits) -> tf.Tensor:
    """``fn(labels, logits)`` of every task [T]."""
    return tf.vectorized_map(lambda args: fn(*args), (labels, logits))

  def task_losses(self, episodes, first_order=False, with_metrics=False,
                  noise: Optional[Noise] = None, constants: Optional[Constants] = None):
    """Each task's meta-loss term [T]: L_query + beta KL + gamma encoder penalty; and, with
    ``with_metrics``, the tasks' mean query loss and metric after each step, gamma, KL."""
    result = self.adapt_tasks(episodes.support_x, episodes.support_y, self.num_inner_steps,
                              first_order, noise, constants)
    losses = self._per_task(self.loss_fn, episodes.query_y,
                            self._logits(episodes.query_x, result.iterates[-1][0], noise))
    losses += self.kl_weight * result.kl + self.encoder_penalty_weight * result.encoder_penalty
    metrics = {}
    if with_metrics:
      logits = [tf.stop_gradient(self._logits(episodes.query_x, p[0])) for p in result.iterates]
      per_step = lambda fn: tf.stack([tf.reduce_mean(tf.cast(
          self._per_task(fn, episodes.query_y, o), self.dtype)) for o in logits])
      metrics["query_loss_per_step"] = per_step(self.loss_fn)
      if self.metric_fn is not None:
        metrics["query_metric_per_step"] = per_step(self.metric_fn)
      if result.gamma is not None:
        metrics["gamma"] = tf.stop_gradient(tf.reduce_mean(result.gamma, axis=0))
      metrics["kl"] = tf.stop_gradient(tf.reduce_mean(result.kl))
    return losses, metrics

  def regularization(self) -> tf.Tensor:
    """lambda_1 * sum ||W||^2 / 2 over the networks + lambda_2 * orthogonality(decoder)."""
    l2 = tf.add_n([tf.reduce_sum(tf.square(w.value)) / 2 for w in self.model.weight_matrices])
    return self.l2_penalty_weight * l2 + \
        self.orthogonality_penalty_weight * orthogonality(self.model.decoder.value)

  def training_noise(self) -> Noise:
    return Noise(self.rng, self.dropout_rate)

  def meta_loss(self, episodes, first_order: bool = False, with_metrics: bool = False,
                training: bool = True, constants: Optional[Constants] = None):
    """Mean over the tasks of their meta-loss terms, plus the regularisation; all tasks at once.

    ``training``: with LEO's sampling and dropout (meta-training); False: deterministic (the
    gradient tests)."""
    noise = self.training_noise() if training else None
    losses, metrics = self.task_losses(episodes, first_order, with_metrics, noise, constants)
    return tf.reduce_mean(losses) + self.regularization(), metrics

  def per_task_meta_gradients(self, episodes, first_order: bool = False):
    """d (task i's meta-loss term) / d LEO's network matrices, per task (deterministic); one
    task's graph, mapped over the tasks."""
    variables = self.inner_variables
    batch_type = type(episodes)  # A NamedTuple with support_x, ..., query_y (an Episode).

    def one(task):
      with tf.GradientTape() as tape:
        losses, _ = self.task_losses(batch_type(*(t[None] for t in task)), first_order)
        loss = losses[0]  # Inside the tape, so that the slice is recorded.
      return tape.gradient(loss, variables)

    stacked = tf.map_fn(one, tuple(episodes), fn_output_signature=[self.dtype] * len(variables))
    return [[g[i] for g in stacked] for i in range(episodes.support_x.shape[0])]
