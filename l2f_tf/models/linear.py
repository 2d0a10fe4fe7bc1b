"""A linear N-way classifier over pre-computed embeddings (e.g. LEO's 640-d features).

MAML (or L2F) over a fixed feature extractor: the inner loop adapts one dense layer's kernel and
bias. `l2f_tf.domains.embeddings.FewShotEmbeddings` builds it by default, so every learner runs
on embedding datasets too.
"""

import gin
import keras


@gin.configurable
def linear_classifier(num_classes: int = 5, embedding_dim: int = 640,
                      name: str = "linear") -> keras.Model:
  """A built Keras 3 model: Input([embedding_dim]) -> Dense(num_classes) logits."""
  if embedding_dim < 1:
    raise ValueError(f"linear_classifier: embedding_dim must be >= 1, got {embedding_dim}.")
  inputs = keras.Input((int(embedding_dim),))
  outputs = keras.layers.Dense(num_classes, kernel_initializer="glorot_uniform",
                               name="logits")(inputs)
  return keras.Model(inputs, outputs, name=name)
