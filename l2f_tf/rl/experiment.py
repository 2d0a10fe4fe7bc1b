"""One meta-RL experiment end to end: train (or resume), evaluate, write results, plot.

Called by `l2f_tf.train.experiment.run_experiment` for a domain with ``is_rl``. Writes, next to
the checkpoints and TensorBoard logs, ``results.json`` (average return on held-out tasks after
0..k adaptation steps, 95% CI over tasks), ``returns.png`` (return vs adaptation steps; for
2D navigation also trajectories before and after one step, with the goals) and
``saved_model/`` (`l2f_tf.rl.export`: act, and adapt from trajectories then act).
"""

import time

import numpy as np
import tensorflow as tf
from absl import logging

from l2f_tf.rl import export as rl_export
from l2f_tf.rl import meta_rl
from l2f_tf.rl.trainer import MetaRLTrainer
from l2f_tf.run_folder import RunFolder
from l2f_tf.train.evaluation import write_eval_summaries
from l2f_tf.train.trainer import build_learner

RETURN_METRIC = "average undiscounted return per trajectory"


def compare_figure(results, path: str) -> str:
  """Return vs adaptation steps of several finished runs (their results.json dicts)."""
  evaluations = {}
  objectives = {result.get("inner_objective", "reinforce") for result in results}
  for result in results:
    label = result["method"]
    if len(objectives) > 1:  # e.g. MAML (reinforce) vs MAML (lvc)
      label += f" ({result.get('inner_objective', 'reinforce')})"
    while label in evaluations:
      label += "'"
    evaluations[label] = result["evaluations"]["test"]
  return plot_returns(path, evaluations, None, results[0]["domain"])


def run_meta_rl(root_dir: str, domain) -> dict:
  """Trains a MetaLearner over the domain's policy with TRPO, then evaluates and plots.

  Args:
    root_dir: the run directory.
    domain: a `l2f_tf.domains.meta_rl.MetaRLDomain`.
  """
  from l2f_tf.train.experiment import learner_label  # Local: that module dispatches here.
  learner = build_learner(domain)
  label = learner_label(learner)
  trainer = MetaRLTrainer(learner=learner, sampler=domain.sampler, root_dir=root_dir)
  started = time.perf_counter()
  step = trainer.train()
  train_seconds = time.perf_counter() - started
  logging.info("Evaluating on %d held-out tasks...", domain.num_eval_tasks)
  evaluation = trainer.evaluate(domain.num_eval_tasks, domain.eval_steps, domain.eval_seed)
  results = {
      "method": label,
      "domain": domain.name,
      "meta_iterations": step,
      "inner_objective": domain.inner_objective,
      "train_seconds": train_seconds,  # of this call (a resumed run counts its last part)
      "metric": RETURN_METRIC,
      "error_bars": "ci95 = 1.96 * sample std / sqrt(n) over held-out tasks",
      "evaluations": {"test": evaluation},
  }
  folder = RunFolder(root_dir)
  folder.write_results(results)
  write_eval_summaries(folder.eval_summaries, step, results["evaluations"])
  rl_export.export(learner, folder.saved_model,
                   domain.sampler.observation_size, domain.sampler.action_size,
                   discount=trainer.discount, gae_lambda=trainer.gae_lambda,
                   config_path=folder.config)
  plot_returns(folder.figure("returns.png"), {label: evaluation}, trainer,
               domain.name)
  for name, value in evaluation.items():
    logging.info("%s: %.3f +- %.3f (n=%d)", name, value["mean"], value["ci95"], value["n"])
  return results


def plot_returns(path: str, evaluations, trainer, env_name: str) -> str:
  """Return vs adaptation steps per learner; with a trainer, 2D navigation adds trajectories
  before and after one step, with the goals."""
  from l2f_tf.train.plots import plt  # matplotlib only for figures
  navigation = env_name == "Navigation2D" and trainer is not None
  fig, axes = plt.subplots(1, 2 if navigation else 1, figsize=(11 if navigation else 5.5, 4),
                           squeeze=False)
  ax = axes[0][0]
  for label, evaluation in evaluations.items():
    steps = sorted(int(k.split("_")[2]) for k in evaluation)
    means = [evaluation[f"return_after_{k}_steps"]["mean"] for k in steps]
    cis = [evaluation[f"return_after_{k}_steps"]["ci95"] for k in steps]
    ax.errorbar(steps, means, yerr=cis, marker="o", capsize=3, label=label)
  ax.set_xlabel("adaptation steps")
  ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
  ax.set_ylabel("average return (95% CI)")
  ax.set_title(env_name)
  ax.legend(fontsize=8)
  if navigation:
    _plot_navigation(axes[0][1], trainer)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _plot_navigation(ax, trainer, num_tasks: int = 3) -> None:
  """First trajectory of a few held-out tasks before and after one adaptation step."""
  per_round = trainer.sampler.num_tasks
  tasks = trainer.task_env.sample_tasks(per_round, seed=[7, 0])
  embeddings, start = trainer._start(tasks, seed=[7, 0, 9])  # pylint: disable=protected-access
  before = trainer.sampler.sample(tasks, lambda o: trainer.policy(start, tf.constant(o)),
                                  seed=[7, 0, 0])
  batch = meta_rl.to_task_batch(before, trainer.discount, trainer.gae_lambda,
                                dtype=tf.as_dtype(trainer.learner.model.dtype))
  stacked, _ = meta_rl.adapt_tasks(trainer.learner, batch, embeddings)
  after = trainer.sampler.sample(tasks, lambda o: trainer.policy(stacked, tf.constant(o)),
                                 seed=[7, 0, 1])
  colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
  for i in range(min(num_tasks, per_round)):
    for trajectories, style in ((before, ":"), (after, "-")):
      valid = trajectories.mask[i, 0] > 0
      xy = trajectories.observations[i, 0][valid]  # starts at the origin
      ax.plot(xy[:, 0], xy[:, 1], style, color=colors[i % len(colors)])
    goal = np.asarray(tasks[i]["goal"])
    ax.scatter([goal[0]], [goal[1]], marker="*", s=120, color=colors[i % len(colors)])
  ax.set_title("before (dotted) / after one step (solid); stars: goals")
  ax.set_aspect("equal")
