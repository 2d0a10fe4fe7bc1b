"""Validation during training and the top-k checkpoints by validation score.

The few-shot protocol of the reference code validates on 600 fixed episodes every epoch, keeps
the best checkpoints and tests with the top 3 ensembled (averaged logits). `BestCheckpoints`
keeps them in ``<root_dir>/best/`` with their scores, so that a resumed run still knows them.
"""

import glob
import json
import os
from typing import Dict, List, Optional

import tensorflow as tf
from absl import logging

from l2f_tf import atomic
from l2f_tf.run_folder import RunFolder
from l2f_tf.train import checkpoints, evaluation

SCORES_NAME = "scores.json"
LOWER_IS_BETTER = ("mse",)


class BestCheckpoints:
  """The ``keep`` checkpoints with the highest validation score (ties: the earlier wins), in
  ``directory`` with their scores in scores.json."""

  def __init__(self, directory: str, keep: int = 3):
    if keep < 1:
      raise ValueError(f"BestCheckpoints.keep must be >= 1, got {keep}.")
    self.directory, self.keep = directory, keep
    self._scores_path = os.path.join(directory, SCORES_NAME)
    os.makedirs(directory, exist_ok=True)

  def _load(self) -> Dict:
    try:
      with open(self._scores_path) as f:
        return json.load(f)
    except FileNotFoundError:
      return {"history": [], "best": []}
    except ValueError:  # Written atomically: only a bad copy or a hand edit gets here.
      logging.warning("%s is not valid JSON: the run forgets its validation scores and best "
                      "checkpoints.", self._scores_path)
      return {"history": [], "best": []}

  def entries(self) -> List[Dict]:
    """[{"step", "score", "path"}] of the kept checkpoints, best first."""
    return sorted([dict(e, path=os.path.join(self.directory, e["name"]))
                   for e in self._load()["best"]], key=lambda e: (-e["score"], e["step"]))

  def history(self) -> Dict[int, float]:
    """step -> score of every validation recorded so far."""
    return {e["step"]: e["score"] for e in self._load()["history"]}

  def _delete(self, name: str) -> None:
    for path in glob.glob(os.path.join(self.directory, name) + ".*"):
      os.remove(path)

  def record(self, step: int, score: float, checkpoint: tf.train.Checkpoint) -> bool:
    """Records a validation and saves the current state if it is among the best ``keep``;
    returns whether it was kept."""
    state = self._load()
    candidate = {"step": int(step), "score": float(score), "name": f"ckpt-{step}"}
    ranked = sorted([e for e in state["best"] if e["step"] != step] + [candidate],
                    key=lambda e: (-e["score"], e["step"]))
    kept, dropped = ranked[:self.keep], ranked[self.keep:]
    is_kept = candidate in kept
    if is_kept:
      checkpoint.write(os.path.join(self.directory, candidate["name"]))
    state["history"] = [e for e in state["history"] if e["step"] != step] + [
        {"step": int(step), "score": float(score)}]
    state["best"] = kept if is_kept else state["best"]
    atomic.write_json(self._scores_path, state)  # A crash never leaves a half-written file.
    for entry in dropped:
      if entry is not candidate:
        self._delete(entry["name"])
    return is_kept

  def tidy(self) -> None:
    """Drops kept checkpoints that are damaged (`checkpoints.damage`; a warning each) and
    deletes checkpoint files that scores.json does not list: those of a kill between saving a
    checkpoint and recording it, or between recording a better one and deleting the checkpoint
    it pushed out. For the process that holds the run folder's lock."""
    state = self._load()
    damaged = []
    for entry in state["best"]:
      why = checkpoints.damage(os.path.join(self.directory, entry["name"]))
      if why is not None:
        damaged.append(entry)
        logging.warning("The best checkpoint %s (step %d, score %.4f) is damaged (%s): dropped "
                        "it from %s.", os.path.join(self.directory, entry["name"]),
                        entry["step"], entry["score"], why, self._scores_path)
    if damaged:
      state["best"] = [e for e in state["best"] if e not in damaged]
      atomic.write_json(self._scores_path, state)
    listed = {e["name"] for e in state["best"]}
    for path in glob.glob(os.path.join(glob.escape(self.directory), "ckpt-*.*")):
      if os.path.basename(path).split(".")[0] not in listed:
        os.remove(path)

  def forget_after(self, step: int) -> None:
    """Drops records newer than ``step`` (a crash after validating, before the checkpoint)."""
    state = self._load()
    newer = [e for e in state["best"] if e["step"] > step]
    for entry in newer:
      self._delete(entry["name"])
    if newer or any(e["step"] > step for e in state["history"]):
      atomic.write_json(self._scores_path,
                        {"history": [e for e in state["history"] if e["step"] <= step],
                         "best": [e for e in state["best"] if e["step"] <= step]})


def exported_checkpoint(folder: RunFolder) -> Optional[str]:
  """The checkpoint whose weights a run exports, evaluates as "test" and plots: its best
  validated one when it validates (few-shot classification), else its latest (None: none)."""
  best = BestCheckpoints(folder.best).entries() if os.path.isdir(folder.best) else []
  return best[0]["path"] if best else checkpoints.latest(folder.checkpoints)


class Validator:
  """Mean metric on ``num_episodes`` fixed episodes of the domain's ``split`` after the
  training number of inner steps; calling it returns a score where higher is better (the
  accuracy, or minus an error) and writes TensorBoard summaries to ``summary_dir`` (if any)."""

  def __init__(self, learner, domain, num_episodes: int = 600, split: str = "val",
               summary_dir: Optional[str] = None):
    self.learner, self.domain = learner, domain
    self.num_episodes, self.split = num_episodes, split
    self.num_steps = learner.num_inner_steps
    self._writer = tf.summary.create_file_writer(summary_dir) if summary_dir else None

  def __call__(self, step: int) -> float:
    outputs, labels = evaluation.domain_predictions(
        self.learner, self.domain, self.split, self.num_episodes, self.num_steps,
        label=f"{self.split} episode", unit="episode")
    summary = evaluation.figures(outputs, labels, self.domain, [self.num_steps])
    name = f"{self.domain.metric_name}_after_{self.num_steps}_steps"
    figure = summary[name]
    logging.info("Validation at step %d: %s %.4f +- %.4f (%d %s episodes)", step, name,
                 figure["mean"], figure["ci95"], figure["n"], self.split)
    if self._writer is not None:
      with self._writer.as_default():
        for key, value in summary.items():
          tf.summary.scalar(f"{self.split}/{key}", value["mean"], step=step)
      self._writer.flush()
    # Scores are "higher is better": negate error metrics such as the sinusoid MSE.
    return -figure["mean"] if self.domain.metric_name in LOWER_IS_BETTER else figure["mean"]
