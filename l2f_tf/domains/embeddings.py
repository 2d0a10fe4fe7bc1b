"""Few-shot classification of pre-computed image embeddings (LEO's miniImageNet/tieredImageNet
features, or embeddings written by `l2f_tf.embed`).

The counterpart of `l2f_tf.domains.few_shot.FewShotClassification` for inputs that are feature
vectors: N-way K-shot episodes with Q queries per class come from
`l2f_tf.data.embedding_episodes` over ``<root>/<dataset>/<crop>/{train,val,test}_embeddings.pkl``
(read by `l2f_tf.data.readers.leo_embeddings`). The per-task loss and metric are those of the
image domain (mean softmax cross-entropy, query accuracy). The default network is a linear
N-way classifier, so MAML and L2F run here too; LEO brings a network of its own.

Evaluation episodes are a pure function of (``eval_seed``, split), with the same split seeds as
the image domain: embeddings written by `l2f_tf.embed` from an image dataset give exactly the
episodes (classes and images) a FewShotClassification run on that dataset evaluates.
"""

from typing import Callable, Dict, Optional

import gin
import keras
import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf.data import embedding_episodes, episodic
from l2f_tf.data.readers import SPLITS
from l2f_tf.data.readers import leo_embeddings
from l2f_tf.domains.base import SupervisedDomain, check_task_share
from l2f_tf.domains.few_shot import accuracy, cross_entropy
from l2f_tf.meta import predictions
from l2f_tf.models.linear import linear_classifier


@gin.configurable
class FewShotEmbeddings(SupervisedDomain):
  """N-way K-shot classification of image embeddings from files in LEO's format.

  Args:
    root: the folder holding ``<dataset>/<crop>/*_embeddings.pkl`` (the extracted archive of
      LEO's embeddings), or in gin a call such as ``@ensure_glyph_embeddings()``.
    dataset: "miniImageNet", "tieredImageNet", or the folder name of one's own embeddings
      (``l2f_tf.embed --dataset_name``, "glyphs" for `ensure_glyph_embeddings`).
    crop: "center" or "multiview" (miniImageNet only).
    name: name of the problem in results.
    num_ways: N, classes per task.
    num_shots: K, support embeddings per class.
    num_queries: Q, query embeddings per class (15 in LEO's reference).
    meta_batch_size: tasks per meta-iteration (12 in LEO's reference).
    network: ``network(num_classes=N, embedding_dim=D)`` -> Keras model (default: linear).
    l2_normalize: divide every embedding by its L2 norm, in training, evaluation and inside an
      exported model (LEO's reference does).
    eval_seed: seed of the fixed validation and test episodes.
    eval_batch_size: episodes per evaluation batch.
    plot_episodes: test episodes behind the accuracy-vs-steps figure.
  """

  metric_name = "accuracy"
  log_metric_per_step = True
  eval_vectorized = False
  eval_distributions = ("test",)
  validation_split = "val"

  def __init__(self, root: str = gin.REQUIRED, dataset: str = "miniImageNet",
               crop: str = "center", name: str = "embeddings", num_ways: int = 5,
               num_shots: int = 1, num_queries: int = 15, meta_batch_size: int = 12,
               network: Callable[..., keras.Model] = linear_classifier,
               l2_normalize: bool = True, eval_seed: int = 20200614,
               eval_batch_size: int = 50, plot_episodes: int = 100):
    if meta_batch_size < 1:
      raise ValueError(f"FewShotEmbeddings.meta_batch_size must be >= 1, got "
                       f"{meta_batch_size}.")
    for setting, value, minimum in (("num_ways", num_ways, 2), ("num_shots", num_shots, 1),
                                    ("num_queries", num_queries, 1)):
      if value < minimum:
        raise ValueError(f"FewShotEmbeddings.{setting} must be >= {minimum}, got {value}.")
    leo_embeddings.embedding_path(root, dataset, crop, "train")  # Checks dataset and crop.
    self.root, self.dataset, self.crop, self.name = root, dataset, crop, name
    self.num_ways, self.num_shots, self.num_queries = num_ways, num_shots, num_queries
    self.meta_batch_size = meta_batch_size
    self.network, self.l2_normalize = network, bool(l2_normalize)
    self.eval_seed, self.eval_batch_size = eval_seed, eval_batch_size
    self.plot_episodes = plot_episodes
    self._samplers: Dict[str, embedding_episodes.EmbeddingEpisodeSampler] = {}

  # --- data ------------------------------------------------------------------------------------
  def sampler(self, split: str) -> embedding_episodes.EmbeddingEpisodeSampler:
    """The (cached) episode sampler of a split; reads and checks its file on first use (also
    against the dimension of the splits already read)."""
    if split not in self._samplers:
      data = leo_embeddings.load_embedding_split(self.root, self.dataset, self.crop, split)
      leo_embeddings.check_same_dimension([s.split for s in self._samplers.values()] + [data])
      self._samplers[split] = embedding_episodes.EmbeddingEpisodeSampler(
          data, self.num_ways, self.num_shots, self.num_queries)
    return self._samplers[split]

  def check_data(self) -> None:
    """Reads every split the run uses (train, validation, evaluation): a missing or damaged
    file, a class with fewer than num_shots + num_queries rows, fewer classes than num_ways or
    splits of different dimensions fail here, before training."""
    splits = dict.fromkeys(["train", self.validation_split, *self.eval_distributions])
    samplers = [self.sampler(split) for split in filter(None, splits)]
    logging.info("Embeddings of %s: %s", self.dataset,
                 "; ".join(repr(sampler.split) for sampler in samplers))

  @property
  def embedding_dim(self) -> int:
    """D, the dimension of the train split's embeddings."""
    return self.sampler("train").embedding_dim

  def _dataset(self, split: str, seed: int, **kwargs) -> tf.data.Dataset:
    return embedding_episodes.embedding_episode_dataset(self.sampler(split), seed, **kwargs)

  def train_dataset(self, seed: int, start_step: int = 0, tasks=None) -> tf.data.Dataset:
    """Meta-batch s holds episodes s*T .. s*T+T-1 of the stream ``seed``: resuming is exact.
    A share (``tasks = (first, count)``) loads episodes s*T+first .. s*T+first+count-1 only."""
    size = self.meta_batch_size
    first, count = check_task_share(tasks, size)
    numbers = tf.data.Dataset.counter(start_step).flat_map(
        lambda s: tf.data.Dataset.range(s * size + first, s * size + first + count))
    return self._dataset("train", seed, episodes=numbers, batch_size=count,
                         l2_normalize_rows=self.l2_normalize)

  def _split_seed(self, split: str) -> int:
    return self.eval_seed + 1000 * SPLITS.index(split)

  def eval_batches(self, split: str, num_tasks: int, raw_pixels: bool = False) -> tf.data.Dataset:
    """The first ``num_tasks`` fixed evaluation episodes of ``split`` ("val" or "test").
    ``raw_pixels``: the embeddings as stored, not normalised (what an exported model gets)."""
    return self._dataset(split, self._split_seed(split), num_episodes=num_tasks,
                         batch_size=self.eval_batch_size, drop_remainder=False,
                         l2_normalize_rows=self.l2_normalize and not raw_pixels)

  def eval_episodes(self, split: str, num_tasks: int):
    """(Episode of numpy arrays [num_tasks, ...], None): small evaluations and plots."""
    return episodic.split_arrays(self.eval_batches(split, num_tasks)), None

  # --- model, loss, metric ---------------------------------------------------------------------
  def build_model(self) -> keras.Model:
    return self.network(num_classes=self.num_ways, embedding_dim=self.embedding_dim)

  @staticmethod
  def loss_fn(labels, logits):
    return cross_entropy(labels, logits)

  @staticmethod
  def task_metric(labels, logits):
    """Per-task evaluation figure: query accuracy (higher is better)."""
    return accuracy(labels, logits)

  # --- export ----------------------------------------------------------------------------------
  def export_signature(self):
    """(support embeddings [N*K, D], support labels [N*K], query embeddings [Q', D]), as
    stored in the files (the SavedModel normalises them as in training)."""
    d, support = self.embedding_dim, self.num_ways * self.num_shots
    return [tf.TensorSpec([support, d], tf.float32, name="support_x"),
            tf.TensorSpec([support], tf.int32, name="support_y"),
            tf.TensorSpec([None, d], tf.float32, name="query_x")]

  def export_description(self) -> str:
    d, support = self.embedding_dim, self.num_ways * self.num_shots
    normalized = (", each L2-normalised inside the model" if self.l2_normalize else "")
    return (f"{self.num_ways}-way {self.num_shots}-shot classification of {d}-d {self.dataset} "
            f"{self.crop} embeddings{normalized}: support_x [{support}, {d}], support_y labels "
            f"in 0..{self.num_ways - 1}, query_x [any, {d}]")

  def export_preprocess(self, x):
    return embedding_episodes.l2_normalize_tf(x) if self.l2_normalize else x

  def export_input_range(self):
    return None

  # --- figures ---------------------------------------------------------------------------------
  def plot(self, learners, path: str, num_steps: int = 5, evaluations=None) -> str:
    """PNG: test accuracy (95% CI) vs inner steps per learner, and the mean L2F gamma of each
    inner tensor for learners that attenuate per tensor.

    A learner with ``evaluations`` (label -> its test figures from results.json) is drawn at
    exactly those steps and numbers; one without is evaluated after 0..num_steps steps on
    ``plot_episodes`` test episodes. Gammas are drawn only for a learner with an attenuation and
    no ``gamma_names`` of its own (LEO's learners adapt other tensors); a learner whose gammas
    cannot be computed is left out of that panel with a warning, never failing the figure."""
    from l2f_tf import plots  # Imported here: matplotlib is only needed for figures.
    curves, gammas = {}, {}
    evaluations = evaluations or {}
    num_tasks = self.plot_episodes
    gamma_learners = {label for label, learner in learners.items()
                      if getattr(learner, "attenuation", None) is not None
                      and getattr(learner, "gamma_names", None) is None}
    needed = any(label not in evaluations or label in gamma_learners for label in learners)
    episodes = self.eval_episodes("test", num_tasks)[0] if needed else None
    recomputed = False
    for label, learner in learners.items():
      if label in evaluations:
        curves[label] = plots.curve_from_figures(evaluations[label], "accuracy")
      else:
        values = predictions.per_task_metrics(learner, episodes, self.task_metric, num_steps,
                                             chunk_size=self.eval_batch_size, vectorized=False)
        curves[label] = (np.arange(num_steps + 1), values.mean(0),
                         1.96 * values.std(0, ddof=1) / np.sqrt(len(values)))
        recomputed = True
      if label in gamma_learners:
        drawn = _mean_gammas(learner, episodes, min(num_tasks, 20))
        if drawn is not None:
          gammas[label] = drawn
    for label, figures in evaluations.items():  # curves without a learner (an ensemble)
      curves.setdefault(label, plots.curve_from_figures(figures, "accuracy"))
    title = f"{self.name}, {self.num_ways}-way {self.num_shots}-shot"
    if recomputed:
      title += f" ({num_tasks} test episodes)"
    return plots.plot_accuracy_by_steps(path, curves, gammas, title=title)


def _mean_gammas(learner, episodes, count: int) -> Optional[tuple]:
  """(inner tensor names, mean gamma per tensor over `count` tasks), or None (with a warning)
  if the learner cannot give one gamma per inner tensor."""
  try:
    gamma = np.mean([np.asarray(learner.attenuate(episodes.support_x[i],
                                                  episodes.support_y[i])[1])
                     for i in range(count)], axis=0)
    names = list(learner.inner_variable_names)
    if gamma.ndim != 1 or len(gamma) != len(names):
      raise ValueError(f"{gamma.shape} gammas for {len(names)} inner tensors")
  except Exception as error:  # pylint: disable=broad-except  # A figure never fails the run.
    logging.warning("Not drawing the gammas of %s: %s", type(learner).__name__, error)
    return None
  return names, gamma
