"""The few-shot embeddings domain: shares of meta-batches, fixed evaluation episodes, data checks,
model, export signature and figure."""

import json
import os
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from l2f_tf.data import readers
from l2f_tf.data.readers import leo_embeddings as le
from l2f_tf.domains.embeddings import FewShotEmbeddings
from tests.test_plots import assert_draws

DIM = 16


def write_splits(root, classes=(8, 6, 6), per_class=12, dims=(DIM, DIM, DIM), dataset="toy"):
  for s, (split, count, dim) in enumerate(zip(readers.SPLITS, classes, dims)):
    rng = np.random.default_rng(s)
    names = [f"s{s}c{c:03d}" for c in range(count) for _ in range(per_class)]
    le.write_embedding_split(le.embedding_path(root, dataset, "center", split),
                             rng.normal(size=(len(names), dim)) * 3, names,
                             [f"{i:05d}.png" for i in range(len(names))])
  return str(root)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return write_splits(tmp_path_factory.mktemp("embeddings"))


def domain(root, **kwargs):
  options = dict(dataset="toy", num_ways=3, num_shots=2, num_queries=4, meta_batch_size=4,
                 eval_batch_size=5)
  options.update(kwargs)
  return FewShotEmbeddings(root=root, **options)


def test_train_dataset_shares_and_resuming(root):
  d = domain(root)
  full = next(iter(d.train_dataset(seed=3)))
  assert full.support_x.shape == (4, 6, DIM) and full.query_y.shape == (4, 12)
  np.testing.assert_allclose(np.linalg.norm(full.query_x, axis=-1), 1.0, rtol=1e-6)
  shares = [next(iter(d.train_dataset(seed=3, tasks=share))) for share in ((0, 1), (1, 3))]
  for i, field in enumerate(full):
    np.testing.assert_array_equal(field.numpy(),
                                  np.concatenate([share[i].numpy() for share in shares]))
  stream = iter(d.train_dataset(seed=3))
  next(stream)
  np.testing.assert_array_equal(next(stream).query_x.numpy(),
                                next(iter(d.train_dataset(seed=3, start_step=1))).query_x)
  with pytest.raises(ValueError, match="not a share of a meta-batch of 4"):
    d.train_dataset(seed=3, tasks=(3, 2))


def test_eval_batches_are_fixed_per_split(root):
  d = domain(root)
  batches = list(d.eval_batches("test", 12))
  assert [b.support_x.shape[0] for b in batches] == [5, 5, 2]
  again = domain(root, meta_batch_size=1).eval_episodes("test", 12)[0]
  np.testing.assert_array_equal(np.concatenate([b.query_x for b in batches]), again.query_x)
  raw = next(iter(d.eval_batches("test", 5, preprocessed=False)))
  np.testing.assert_allclose(d.export_preprocess(raw.query_x).numpy(), batches[0].query_x,
                             rtol=1e-6)
  assert np.linalg.norm(raw.query_x, axis=-1).mean() > 2  # Stored, not normalised.
  val = next(iter(d.eval_batches("val", 5)))
  assert not np.allclose(val.query_x, batches[0].query_x)
  plain = domain(root, l2_normalize=False)
  np.testing.assert_array_equal(next(iter(plain.eval_batches("test", 5))).query_x,
                                raw.query_x)


def test_model_loss_metric_and_export(root):
  d = domain(root)
  assert d.embedding_dim == DIM and not d.eval_vectorized and d.validation_split == "val"
  model = d.build_model()
  assert model.input_shape == (None, DIM) and model.output_shape == (None, 3)
  episode = next(iter(d.train_dataset(seed=0)))
  logits = model(episode.query_x[0])
  assert float(d.loss_fn(episode.query_y[0], logits)) > 0
  assert 0 <= float(d.task_metric(episode.query_y[0], logits)) <= 1
  sx, sy, qx = d.export_signature()
  assert sx.shape.as_list() == [6, DIM] and sx.dtype == tf.float32 and sy.dtype == tf.int32
  assert sy.shape.as_list() == [6] and qx.shape.as_list() == [None, DIM]
  assert "3-way 2-shot" in d.export_description() and d.export_input_range() is None
  x = tf.constant([[3.0, 4.0]])
  np.testing.assert_allclose(d.export_preprocess(x).numpy(), [[0.6, 0.8]], rtol=1e-6)
  assert domain(root, l2_normalize=False).export_preprocess(x) is x
  custom = domain(root, network=lambda num_classes, embedding_dim: keras.Sequential())
  assert isinstance(custom.build_model(), keras.Sequential)


def test_check_data_errors_name_the_fix(root, tmp_path):
  domain(root).check_data()
  with pytest.raises(readers.DatasetError, match=r"toy/center/train_embeddings.pkl does not "
                     r"exist \(the root .*nowhere does not exist; .* is empty\): set the root"):
    domain(str(tmp_path / "nowhere")).check_data()
  with pytest.raises(readers.DatasetError, match=r"val_embeddings.pkl has 6 classes, fewer "
                     "than the 7 ways requested"):
    domain(root, num_ways=7).check_data()
  with pytest.raises(readers.DatasetError, match=r"Class 's0c000' of .*train_embeddings.pkl has "
                     r"12 embeddings .*fewer than the 13 needed per class \(num_shots=3 \+ "
                     r"num_queries=10\): lower num_shots or num_queries"):
    domain(root, num_shots=3, num_queries=10).check_data()
  odd = write_splits(tmp_path / "odd", dims=(DIM, DIM, DIM + 1))
  with pytest.raises(readers.DatasetError, match="dimensions differ between splits"):
    domain(odd).check_data()
  with pytest.raises(readers.DatasetError, match="only for the 'center' crop"):
    domain(root, dataset="tieredImageNet", crop="multiview")
  with pytest.raises(ValueError, match="FewShotEmbeddings.meta_batch_size must be >= 1"):
    domain(root, meta_batch_size=0)
  with pytest.raises(ValueError, match="FewShotEmbeddings.num_ways must be >= 2"):
    domain(root, num_ways=1)


def test_plot_draws_results_and_never_fails_on_gammas(root, tmp_path):
  d = domain(root, plot_episodes=6)
  figures = {f"accuracy_after_{k}_steps": {"mean": 0.5 + 0.1 * k, "ci95": 0.02, "n": 600}
             for k in range(3)}

  def attenuate(support_x, support_y):
    raise NotImplementedError("no gamma per inner tensor")

  learners = {"maml": types.SimpleNamespace(attenuation=None),
              "leo": types.SimpleNamespace(attenuation=object(), gamma_names=["z", "w"],
                                           attenuate=lambda x, y: (None, np.array([0.25, 0.5]))),
              "odd": types.SimpleNamespace(attenuation=object(), attenuate=attenuate,
                                           gamma_names=["w", "b"])}
  path = d.plot(learners, str(tmp_path / "accuracy.png"),
                evaluations={label: figures for label in learners})
  assert path.endswith("accuracy.png") and os.path.getsize(path) > 0
  with open(tmp_path / "accuracy.json") as f:  # The numbers drawn, read back from the figure.
    drawn = json.load(f)["panels"][0]["series"]
  for label in learners:
    assert_draws(drawn[label], figures, "accuracy", scale=100)
  with open(tmp_path / "accuracy.json") as f:  # Only the learner whose gammas exist has bars.
    panels = json.load(f)["panels"]
  assert len(panels) == 2 and "odd" not in panels[1]["series"]
  assert np.allclose(panels[1]["series"]["leo"]["height"], [0.25, 0.5])
  assert panels[1]["xticklabels"] == ["z", "w"]
