"""Meta-iterations per second of the same training under each strategy on this machine.

  python benchmarks/scale_out.py                      # default, mirrored, multi_worker
  python benchmarks/scale_out.py --strategies=default,multi_worker --iterations=40

Every case runs ``run_experiment.py`` on the same tiny-glyphs few-shot experiment (5-way 1-shot,
conv4 with 32 filters, meta-batch 4, 5 inner steps, second order, tasks one at a time) in fresh
processes: ``default`` (one process), ``mirrored`` (one process, the CPU split into
``--devices`` logical devices, each with its share of the meta-batch's tasks) and
``multi_worker`` (``--devices`` processes on 127.0.0.1 with TF_CONFIG, one share each). The
rate is the chief's last progress line: meta-iterations after the first (which traces and
compiles) divided by their time. On one CPU the strategies share the same cores, so this
measures the cost of splitting and all-reducing, not a speed-up: that needs one device (GPU
or machine) per replica.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import os
import re
import shutil
import subprocess
import sys
import tempfile

from absl import app, flags

from l2f_tf.train import distribution

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STRATEGIES = flags.DEFINE_list("strategies", ["default", "mirrored", "multi_worker"],
                               "Strategies to time.")
ITERATIONS = flags.DEFINE_integer("iterations", 30, "Meta-iterations per case.")
DEVICES = flags.DEFINE_integer("devices", 2, "Logical CPUs (mirrored) or workers.")
WORK_DIR = flags.DEFINE_string("work_dir", None, "Where runs go (default: a temporary folder).")


def bindings(cache_dir, iterations, devices):
  return [f"ensure_glyphs.cache_dir = '{cache_dir}'", "ensure_glyphs.num_classes = 100",
          "ensure_glyphs.instances_per_class = 20", f"Trainer.num_iterations = {iterations}",
          "Trainer.first_order_until = 0", "Trainer.num_val_episodes = 0",
          "Runner.log_every_seconds = 1e9", f"Runner.checkpoint_every = {iterations}",
          "Trainer.summary_every = 0", "run_experiment.num_eval_tasks = 4",
          "run_experiment.plot = False", f"make_strategy.num_cpu_devices = {devices}"]


def command(root, strategy, extra):
  return [sys.executable, os.path.join(REPO, "run_experiment.py"), f"--root_dir={root}",
          "--gin_file=gin/glyphs/l2f_1shot.gin",
          f"--strategy={strategy}"] + [f"--gin_bindings={b}" for b in extra]


def rate_of(log_text):
  """Meta-iterations per second from the last progress line of a log."""
  found = re.findall(r"\| ([0-9.]+) (meta-iterations/s|s/meta-iteration) \|", log_text)
  if not found:
    raise RuntimeError(f"no progress line in the log:\n{log_text[-3000:]}")
  value, unit = found[-1]
  return float(value) if unit == "meta-iterations/s" else 1.0 / float(value)


def run_case(work, strategy, extra, devices):
  root = os.path.join(work, strategy)
  shutil.rmtree(root, ignore_errors=True)
  if strategy != "multi_worker":
    out = subprocess.run(command(root, strategy, extra), capture_output=True, text=True,
                         cwd=REPO)
    if out.returncode:
      raise RuntimeError(out.stderr[-3000:])
    return rate_of(out.stderr)
  workers = []
  for tf_config in distribution.local_tf_configs(devices):
    env = dict(os.environ, TF_CONFIG=tf_config)
    workers.append(subprocess.Popen(command(root, strategy, extra), env=env, cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                    text=True))
  logs = [w.communicate()[1] for w in workers]
  if any(w.returncode for w in workers):
    raise RuntimeError("\n".join(log[-3000:] for log in logs))
  return rate_of(logs[0])


def main(argv):
  del argv
  work = WORK_DIR.value or tempfile.mkdtemp(prefix="scale_out_")
  cache = os.path.join(work, "glyphs")
  extra = bindings(cache, ITERATIONS.value, DEVICES.value)
  print(f"{'strategy':<14} {'meta-iterations/s':>18} {'s/meta-iteration':>17}")
  for strategy in STRATEGIES.value:
    rate = run_case(work, strategy, extra, DEVICES.value)
    print(f"{strategy:<14} {rate:>18.3f} {1.0 / rate:>17.3f}", flush=True)
  print(f"(tiny glyphs, 5-way 1-shot, conv4-32, meta-batch 4, 5 inner steps, second order, "
        f"{ITERATIONS.value} meta-iterations; {DEVICES.value} devices or workers; {os.cpu_count()} "
        "CPU cores)")


if __name__ == "__main__":
  app.run(main)
