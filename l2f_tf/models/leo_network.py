"""The networks of LEO (Rusu et al., ICLR 2019): encoder, relation network and decoder.

Not adapted in LEO's inner loop (`l2f_tf.meta.leo` runs the algorithm): they map a task's
support embeddings [.., D] to a Gaussian latent code [.., L] per class, and a code to the mean
and spread of that class's classifier weights. As in LEO's code, all are linear maps without
bias, Glorot-uniform; the relation network is an MLP over pairs of codes, ReLU between layers.
"""

from typing import List

import gin
import keras
import tensorflow as tf


class LEONetwork(keras.layers.Layer):
  """LEO's encoder, relation network and decoder for N-way tasks on D-dim embeddings.

  Args:
    num_classes: N, classes per task (the classifier has one weight vector per class).
    embedding_dim: D, the size of the input embeddings.
    num_latents: L, the size of a class's latent code.
    relation_layers: layers of the relation network's MLP (3 in LEO).
  """

  def __init__(self, num_classes: int, embedding_dim: int, num_latents: int = 64,
               relation_layers: int = 3, **kwargs):
    super().__init__(**kwargs)
    for name, value in (("num_classes", num_classes), ("embedding_dim", embedding_dim),
                        ("num_latents", num_latents), ("relation_layers", relation_layers)):
      if int(value) < 1:
        raise ValueError(f"leo_network.{name} must be >= 1, got {value}.")
    self.num_classes, self.embedding_dim = int(num_classes), int(embedding_dim)
    self.num_latents, self.num_relation_layers = int(num_latents), int(relation_layers)
    glorot = keras.initializers.GlorotUniform()
    d, l = self.embedding_dim, self.num_latents
    self.encoder = self.add_weight(shape=(d, l), initializer=glorot, name="encoder")
    # One attribute per matrix: checkpoints track attributes, not a list of Keras variables.
    for i in range(relation_layers):
      setattr(self, f"relation_{i}", self.add_weight(shape=(2 * l, 2 * l), initializer=glorot,
                                                     name=f"relation_{i}"))
    self.decoder = self.add_weight(shape=(l, 2 * d), initializer=glorot, name="decoder")
    self.built = True

  @property
  def relation(self) -> List[keras.Variable]:
    """The relation network's matrices, first layer first."""
    return [getattr(self, f"relation_{i}") for i in range(self.num_relation_layers)]

  @property
  def weight_matrices(self) -> List[keras.Variable]:
    """Encoder, relation layers and decoder: the variables LEO's l2 penalty applies to."""
    return [self.encoder, *self.relation, self.decoder]

  def encode(self, x: tf.Tensor) -> tf.Tensor:
    """Embeddings [.., D] -> codes [.., L]."""
    return tf.tensordot(x, self.encoder.value, axes=1)

  def relate(self, codes: tf.Tensor) -> tf.Tensor:
    """Codes of the M support examples of each task [.., M, L] -> [.., M, 2L]: for each example,
    the mean over all M partners j (itself included) of the MLP of the pair [c_i, c_j]."""
    pairs = tf.shape(codes)[:-1]
    shape = tf.concat([pairs, pairs[-1:], tf.shape(codes)[-1:]], axis=0)  # [.., M, M, L]
    left = tf.broadcast_to(codes[..., :, None, :], shape)
    right = tf.broadcast_to(codes[..., None, :, :], shape)
    h = tf.concat([left, right], axis=-1)
    for i, w in enumerate(self.relation):
      h = tf.tensordot(h, w.value, axes=1)
      if i < len(self.relation) - 1:
        h = tf.nn.relu(h)
    return tf.reduce_mean(h, axis=-2)

  def decode(self, z: tf.Tensor) -> tf.Tensor:
    """Latent codes [.., L] -> [.., 2D]: the classifier weights' means, then their pre-spreads
    (see `l2f_tf.meta.leo.gaussian_parameters`)."""
    return tf.tensordot(z, self.decoder.value, axes=1)

  def call(self, x):
    """Unused: LEO calls encode / relate / decode."""
    return self.encode(x)


@gin.configurable
def leo_network(num_classes: int, embedding_dim: int, num_latents: int = 64,
                relation_layers: int = 3) -> LEONetwork:
  """LEO's networks for gin: ``FewShotEmbeddings.network = @leo_network``."""
  return LEONetwork(num_classes, embedding_dim, num_latents, relation_layers,
                    name="leo_network")
