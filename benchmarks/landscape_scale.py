"""Controlled check: the landscape measures of a trained run when some inner-loop tensors are
scaled, the rest unchanged.

  python benchmarks/landscape_scale.py --run_dir=runs/analysis/glyphs_maml_5shot \
      --match=conv --scales=1,0.5,0.25

A convolution followed by batch norm computes the same function at any positive scale of its
kernel, so the support loss at theta does not change, but the gradient scales by 1/c and the
curvature by 1/c^2. The gradient change and the beta-smoothness are measured in parameter
space, so they are not invariant to that scale. This script prints the loss and the measures
(mean over ``--num_tasks`` test tasks) for each scale c of the tensors whose name contains
``--match``. Use it to tell whether a change of these measures (for example L2F's gamma < 1 on
conv kernels) comes from a changed function or only from the scale.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

from absl import app, flags

from l2f_tf.analysis import measures
from l2f_tf.meta import diagnostics
from l2f_tf.meta import predictions
from l2f_tf.train import restore

RUN_DIR = flags.DEFINE_string("run_dir", None, "A finished run.")
MATCH = flags.DEFINE_string("match", "conv", "Scale the inner-loop tensors whose path contains "
                            "this.")
SCALES = flags.DEFINE_list("scales", ["1", "0.5", "0.25"], "Scales c to try.")
NUM_TASKS = flags.DEFINE_integer("num_tasks", 50, "Test tasks.")


def main(argv):
  del argv
  domain, learner = restore.restore_learner(RUN_DIR.value)
  episodes = domain.eval_batches("test", NUM_TASKS.value)
  if not predictions.is_task_batch(episodes):
    episodes = list(episodes)
  names = learner.inner_variable_names
  scaled = [MATCH.value in name for name in names]
  if not any(scaled):
    raise app.UsageError(f"No inner-loop tensor matches --match={MATCH.value!r}: {names}")
  first = next(iter(predictions.batches(episodes, 1)))
  print(f"{RUN_DIR.value}: {sum(scaled)} tensors scaled ({MATCH.value!r}), "
        f"{NUM_TASKS.value} test tasks")
  print("| scale | support loss at theta (task 0) | " +
        " | ".join(diagnostics.LANDSCAPE_MEASURES) + " |")
  print("| --- " * (len(diagnostics.LANDSCAPE_MEASURES) + 2) + "|")
  for c in (float(s) for s in SCALES.value):
    with measures.scaled_inner_variables(learner,
                                         {j: c for j, hit in enumerate(scaled) if hit}):
      loss = float(learner.loss_at(learner.theta(), first.support_x[0], first.support_y[0]))
      means = measures.landscapes(learner, episodes).mean(axis=0)
    print(f"| {c:g} | {loss:.4f} | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
  app.run(main)
