"""Few-shot classification of pre-computed image embeddings (LEO's miniImageNet/tieredImageNet
features, or embeddings written by `l2f_tf.embed`): the counterpart of
`l2f_tf.domains.few_shot.FewShotClassification` for inputs that are feature vectors, read from
``<root>/<dataset>/<crop>/{train,val,test}_embeddings.pkl`` by
`l2f_tf.data.readers.leo_embeddings`. The default network is a linear N-way classifier, so MAML
and L2F run here too; LEO brings a network of its own.
"""

from typing import Callable

import gin
import keras
import tensorflow as tf
from absl import logging

from l2f_tf.data import episodic
from l2f_tf.data.readers import leo_embeddings
from l2f_tf.domains.few_shot import EpisodicFewShot, naming_root_binding
from l2f_tf.models.linear import linear_classifier

ROOT_BINDING = "FewShotEmbeddings.root"


@gin.configurable
class FewShotEmbeddings(EpisodicFewShot):
  """N-way K-shot classification of image embeddings from files in LEO's format.

  Args (and those of `l2f_tf.domains.few_shot.EpisodicFewShot`):
    root: the folder holding ``<dataset>/<crop>/*_embeddings.pkl`` (the extracted archive of
      LEO's embeddings), or in gin a call such as ``@ensure_glyph_embeddings()``.
    dataset: "miniImageNet", "tieredImageNet", or the folder name of one's own embeddings
      (``l2f_tf.embed --dataset_name``, "glyphs" for `ensure_glyph_embeddings`).
    crop: "center" or "multiview" (miniImageNet only).
    meta_batch_size: 12 in LEO's reference.
    network: ``network(num_classes=N, embedding_dim=D)`` -> Keras model (default: linear).
    l2_normalize: divide every embedding by its L2 norm, in training, evaluation and inside an
      exported model (LEO's reference does).
  """

  def __init__(self, root: str = gin.REQUIRED, dataset: str = "miniImageNet",
               crop: str = "center", name: str = "embeddings", num_ways: int = 5,
               num_shots: int = 1, num_queries: int = 15, meta_batch_size: int = 12,
               network: Callable[..., keras.Model] = linear_classifier,
               l2_normalize: bool = True, eval_seed: int = 20200614,
               eval_batch_size: int = 50, plot_episodes: int = 100):
    super().__init__(name, num_ways, num_shots, num_queries, meta_batch_size, eval_seed,
                     eval_batch_size, plot_episodes)
    with naming_root_binding(ROOT_BINDING):
      leo_embeddings.embedding_path(root, dataset, crop, "train")  # Checks dataset and crop.
    self.root, self.dataset, self.crop = root, dataset, crop
    self.network, self.l2_normalize = network, bool(l2_normalize)

  def _new_sampler(self, split: str) -> episodic.EmbeddingEpisodeSampler:
    """Reads and checks the split's file (also against the dimension of the splits read)."""
    with naming_root_binding(ROOT_BINDING):
      data = leo_embeddings.load_embedding_split(self.root, self.dataset, self.crop, split)
    leo_embeddings.check_same_dimension([s.split for s in self._samplers.values()] + [data])
    return episodic.EmbeddingEpisodeSampler(data, self.num_ways, self.num_shots,
                                            self.num_queries)

  def _check_split(self, split: str) -> None:
    logging.info("Embeddings of %s: %r", self.dataset, self.sampler(split).split)

  def _preprocess(self, x):
    """L2 normalisation in numpy (as in LEO's pipeline; the export's TensorFlow formula may
    differ in the last bit)."""
    if not self.l2_normalize:
      return x
    return tf.numpy_function(episodic.l2_normalize, [x], tf.float32, stateful=False)

  @property
  def embedding_dim(self) -> int:
    """D, the dimension of the train split's embeddings."""
    return self.input_shape[0]

  def make_network(self) -> keras.Model:
    return self.network(num_classes=self.num_ways, embedding_dim=self.embedding_dim)

  def export_description(self) -> str:
    d, support = self.embedding_dim, self.num_ways * self.num_shots
    normalized = (", each L2-normalised inside the model" if self.l2_normalize else "")
    return (f"{self.num_ways}-way {self.num_shots}-shot classification of {d}-d {self.dataset} "
            f"{self.crop} embeddings{normalized}: support_x [{support}, {d}], support_y labels "
            f"in 0..{self.num_ways - 1}, query_x [any, {d}]")

  def export_preprocess(self, x):
    return episodic.l2_normalize_tf(x) if self.l2_normalize else x
