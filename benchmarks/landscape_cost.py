"""What logging the inner loop's landscape (``Trainer.landscape = True``) costs.

  python benchmarks/landscape_cost.py                                  # sinusoid and glyphs
  python benchmarks/landscape_cost.py --gin_file=gin/glyphs/l2f_5shot.gin --repeats=20

For each gin file: the median seconds of one plain compiled meta-iteration (second order, as
configured: XLA, sequential tasks), of one summary step (the step that also returns gamma, the
per-step losses and the degree of conflict) and of the landscape measurement added to a summary
step, on the same meta-batches. Landscape logging runs only at summary steps
(``Trainer.summary_every``), so its cost per meta-iteration is the last figure divided by that
number; the table prints it as a share of a plain step, and the one-off seconds of its first
call (tracing).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import os
import statistics
import tempfile
import time

import tensorflow as tf
from absl import app, flags

from l2f_tf.train import restore
from l2f_tf.train.experiment import build_learner
from l2f_tf.train.trainer import Trainer

GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", ["gin/sinusoid/l2f_5shot.gin", "gin/glyphs/l2f_5shot.gin"], "Experiments.")
REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls of each function.")


def median_seconds(fn, batches):
  """(median seconds of a call, seconds of the first call: tracing and compiling)."""
  start = time.perf_counter()
  tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, fn(batches[0]))
  first = time.perf_counter() - start
  times = []
  for batch in batches[1:]:
    start = time.perf_counter()
    result = fn(batch)
    tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
    times.append(time.perf_counter() - start)
  return statistics.median(times), first


def measure(gin_file: str, repeats: int):
  domain = restore.parse_domain([gin_file], ["Trainer.landscape = True"])
  learner = build_learner(domain)
  with tempfile.TemporaryDirectory() as root:
    trainer = Trainer(learner, domain, root_dir=root, num_val_episodes=0)
    dataset = trainer.domain.train_dataset(trainer.seed)
    batches = list(dataset.take(repeats + 1))
    plain = median_seconds(trainer.train_step_fn(False, False), batches)
    summary = median_seconds(trainer.train_step_fn(False, True), batches)
    landscape = median_seconds(trainer.landscape_fn(), batches)
  return {"plain": plain[0], "summary": summary[0], "landscape": landscape[0],
          "landscape_first_call": landscape[1], "summary_every": trainer.summary_every}


def main(argv):
  del argv
  print(f"{os.cpu_count()} CPUs, TensorFlow {tf.__version__}; median of "
        f"{REPEATS.value} calls after one untimed call")
  print("| experiment | plain step (s) | summary step (s) | landscape (s) | landscape / plain "
        "| per meta-iteration at summary_every | landscape's first call (tracing) (s) |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for gin_file in GIN_FILES.value:
    m = measure(gin_file, REPEATS.value)
    ratio = m["landscape"] / m["plain"]
    print(f"| {gin_file} | {m['plain']:.4f} | {m['summary']:.4f} | {m['landscape']:.4f} | "
          f"{ratio:.2f}x | {100 * ratio / m['summary_every']:.1f}% "
          f"(every {m['summary_every']}) | {m['landscape_first_call']:.1f} |")


if __name__ == "__main__":
  app.run(main)
