"""RunFolder: the layout of a run directory and atomic results."""

import os

import pytest

from l2f_tf.run_folder import CONFIG_NAME, RunFolder


def test_layout_names_every_output(tmp_path):
  folder = RunFolder(tmp_path)
  assert folder.config == os.path.join(tmp_path, CONFIG_NAME) == os.path.join(
      tmp_path, "operative_config.gin")
  names = [folder.checkpoints, folder.train_summaries, folder.eval_summaries, folder.best,
           folder.results, folder.saved_model, folder.figure("returns.png")]
  assert [os.path.relpath(p, tmp_path) for p in names] == [
      "checkpoints", "train", "eval", "best", "results.json", "saved_model", "returns.png"]
  assert not os.listdir(tmp_path)  # naming a path creates nothing


def test_results_are_written_atomically_and_read_back(tmp_path, monkeypatch):
  folder = RunFolder(tmp_path / "run")
  with pytest.raises(ValueError, match="run is not a run folder: it does not exist"):
    folder.read_results()
  folder.prepare()
  with pytest.raises(ValueError, match="results.json is missing.*re-run"):
    folder.read_results()
  folder.write_results({"method": "MAML", "value": 1.5})
  assert folder.read_results() == {"method": "MAML", "value": 1.5}

  def crash(*args, **kwargs):
    raise RuntimeError("killed while writing")

  monkeypatch.setattr(os, "fsync", crash)  # after the new text is in the temporary file
  with pytest.raises(RuntimeError):
    folder.write_results({"method": "MAML+L2F"})
  monkeypatch.undo()
  # The old file is intact and no temporary file is left behind.
  assert folder.read_results() == {"method": "MAML", "value": 1.5}
  assert sorted(os.listdir(folder.root)) == ["results.json"]


def test_each_path_of_the_layout_is_described_in_words(tmp_path):
  """What a full disk's line says it was writing (l2f_tf.train.disk_full)."""
  folder = RunFolder(str(tmp_path))
  open(folder.figure("returns.png"), "w").close()
  words = {path: folder.describe(os.path.join(folder.root, path)) for path in (
      "operative_config.gin", "stages.json", "best/ckpt-12.index", "eval/events.x",
      "returns.png", "returns.json", "notes.txt", ".lock")}
  assert words == {
      "operative_config.gin": "the run's config", "stages.json": "the record of finished stages",
      "best/ckpt-12.index": "the best validated checkpoint of meta-iteration 12",
      "eval/events.x": "TensorBoard summaries of the evaluation", "returns.png": "a figure",
      "returns.json": "the numbers of a figure", "notes.txt": "a file of the run",
      ".lock": "the run folder's lock"}
  assert folder.describe(folder.root) == "the run folder"
  assert folder.describe(os.path.dirname(folder.root)) is None
