"""LEO vs LEO+L2F vs MAML vs MAML+L2F on the same 600 glyph test episodes, paired.

MAML and MAML+L2F meta-train conv4-32 on the glyph images (gin/glyphs/{maml,l2f}_Kshot.gin);
LEO and LEO+L2F meta-train on a pretrained conv4's features of the same images
(gin/glyphs/leo{,_l2f}_Kshot.gin). The embedding pipeline chooses episode e of a seed exactly
as the image pipeline does (`l2f_tf.data.episodic.choose_episode`) and the embeddings keep the
reader's class and image order, so both evaluate the same classes and images in every test
episode. This script checks that (class names and the chosen images of all episodes), then
prints each learner's test accuracy (best validated checkpoint, mean +- 95% CI over episodes)
and the paired differences between learners (mean of the per-episode differences +- its 95%
CI), with nearest class mean on LEO's features as a floor, and writes them to
``<runs>/leo_comparison.json``.

Runs that are missing are trained first (``run_experiment.py``; a MAML glyph run takes ~10
minutes on a 2-core CPU, a LEO one ~2):

  python benchmarks/leo_glyphs.py --runs=runs/glyphs --shots=1,5
"""

import json
import os
import subprocess
import sys

import numpy as np
from absl import app, flags

from l2f_tf import run_folder
from l2f_tf.meta import predictions
from l2f_tf.stats import mean_and_ci95
from l2f_tf.train import restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNERS = (("maml", "MAML"), ("l2f", "MAML+L2F"), ("leo", "LEO"), ("leo_l2f", "LEO+L2F"))
NCM = "nearest class mean (LEO's features)"
PAIRS = (("MAML+L2F", "MAML"), ("LEO+L2F", "LEO"), ("LEO", "MAML"), ("LEO+L2F", "MAML+L2F"),
         ("LEO", NCM))
FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string("runs", "runs/glyphs", "Folder of the runs <learner>_<K>shot.")
  flags.DEFINE_list("shots", ["1", "5"], "Shot counts to compare.")
  flags.DEFINE_integer("num_tasks", 600, "Test episodes (the runs' evaluation uses 600).")


def ensure_run(root: str, gin_name: str) -> None:
  """Trains the run (or finishes it) unless its results.json exists."""
  if os.path.exists(os.path.join(root, "results.json")):
    return
  print(f"Training {root} ({gin_name})...", flush=True)
  subprocess.run([sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
                  f"--gin_file=gin/glyphs/{gin_name}.gin"], check=True, cwd=REPO)


def per_episode_accuracy(root: str, num_tasks: int):
  """(domain, accuracy of each test episode after the run's training number of inner steps,
  the run's own results.json figure for it)."""
  domain, learner = restore.restore_learner(root)
  steps = learner.num_inner_steps
  values = predictions.per_task_metrics(learner, domain.eval_batches("test", num_tasks),
                                       domain.task_metric, steps,
                                       chunk_size=domain.eval_batch_size,
                                       vectorized=domain.eval_vectorized)[:, steps]
  with open(os.path.join(root, "results.json")) as f:
    reported = json.load(f)["evaluations"]["test"][f"accuracy_after_{steps}_steps"]["mean"]
  run_folder.release_locks()
  return domain, values, reported


def nearest_class_mean_accuracy(domain, num_tasks: int) -> np.ndarray:
  """Per-episode accuracy of nearest class mean on the LEO domain's features: each query goes
  to the class whose mean L2-normalised support embedding is nearest (no meta-learning), a
  floor for what the learners add to the pretrained features."""
  values = []
  for batch in domain.eval_batches("test", num_tasks):
    support_x, support_y, query_x, query_y = (np.asarray(t) for t in (
        batch.support_x, batch.support_y, batch.query_x, batch.query_y))
    for sx, sy, qx, qy in zip(support_x, support_y, query_x, query_y):
      sx = sx / np.linalg.norm(sx, axis=-1, keepdims=True)
      qx = qx / np.linalg.norm(qx, axis=-1, keepdims=True)
      means = np.stack([sx[sy == c].mean(0) for c in range(int(sy.max()) + 1)])
      nearest = np.argmin(((qx[:, None] - means[None]) ** 2).sum(-1), axis=1)
      values.append(np.mean(nearest == qy))
  return np.array(values[:num_tasks])


def check_same_episodes(image_domain, embedding_domain, num_tasks: int) -> None:
  """The two domains' test episodes hold the same classes (by name) and the same images."""
  images = image_domain.sampler("test")
  embeddings = embedding_domain.sampler("test")
  classes_file = os.path.join(embedding_domain.root, embedding_domain.dataset, "classes.json")
  with open(classes_file) as f:
    names = json.load(f)["classes"]["test"]  # key id -> the reader's class name
  real = [names[i] for i in embeddings.split.class_names]
  assert real == list(images.class_index.class_names), "the class order differs"
  seed = image_domain.split_seed("test")
  assert seed == embedding_domain.split_seed("test")
  for e in range(num_tasks):
    a, b = images.choose(seed, e), embeddings.choose(seed, e)
    assert np.array_equal(a[0], b[0]) and all(np.array_equal(x, y) for x, y in zip(a[1], b[1]))


def compare(shots: int, runs: str, num_tasks: int):
  values, domains, reported = {}, {}, {}
  for prefix, label in LEARNERS:
    root = os.path.join(runs, f"{prefix}_{shots}shot")
    ensure_run(root, f"{prefix}_{shots}shot")
    domains[label], values[label], reported[label] = per_episode_accuracy(root, num_tasks)
  check_same_episodes(domains["MAML"], domains["LEO"], num_tasks)
  table = {label: {**mean_and_ci95(100 * v), "results_json": 100 * reported[label]}
           for label, v in values.items()}
  values[NCM] = nearest_class_mean_accuracy(domains["LEO"], num_tasks)
  table[NCM] = mean_and_ci95(100 * values[NCM])
  pairs = {f"{a} - {b}": mean_and_ci95(100 * (values[a] - values[b])) for a, b in PAIRS}
  return table, pairs


def main(argv):
  del argv
  out = {}
  for shots in (int(k) for k in FLAGS.shots):
    table, pairs = compare(shots, FLAGS.runs, FLAGS.num_tasks)
    out[f"{shots}shot"] = {"accuracy": table, "paired_differences": pairs}
    print(f"\n5-way {shots}-shot glyphs, {FLAGS.num_tasks} test episodes (accuracy %, "
          "mean +- 95% CI; results.json in brackets):")
    for label, row in table.items():
      reported = f"  [{row['results_json']:.2f}]" if "results_json" in row else ""
      print(f"  {label:9s} {row['mean']:6.2f} +- {row['ci95']:.2f}{reported}")
    print("  paired differences (same episodes):")
    for name, row in pairs.items():
      print(f"  {name:20s} {row['mean']:+6.2f} +- {row['ci95']:.2f}")
  path = os.path.join(FLAGS.runs, "leo_comparison.json")
  with open(path, "w") as f:
    json.dump(out, f, indent=1)
  print(f"\nWrote {path}")


if __name__ == "__main__":
  define_flags()
  app.run(main)
