"""Time and memory of a second-order meta-iteration against the number of inner steps.

  python benchmarks/vision_inner_steps.py                      # 5, 10, 20, 50 steps
  python benchmarks/vision_inner_steps.py --steps=5,10 --repeats=2   # fewer, quicker
  python benchmarks/vision_inner_steps.py --figure=docs/vision_inner_steps.png \\
      --output=/tmp/inner_steps.json

The reference configuration of ``benchmarks/vision_step.py`` (conv4-48, 5-way 5-shot, 15
queries per class, 84x84x3, meta-batch 2, second order, MAML+L2F, Adam; random images) at each
number of inner steps, for three implementations, each case in a fresh process one after the
other:

- l2f_tf's default (``Trainer.sequential_tasks``: tasks one at a time, inner steps recomputed
  in the backward pass, so memory holds one step's activations);
- l2f_tf's plain path (one tape around the meta-batch: every step's activations are kept);
- the authors' PyTorch L2F (github.com/baiksung/L2F), in the scratch venv that
  ``vision_step.py --compare_reference`` sets up (``--reference_setup``), with their
  ``number_of_training_steps_per_iter`` set to the same count.

A process whose resident memory passes ``--memory_cap_gb`` is stopped and its row says how
far it got: the machine has no swap, so such a case does not fit. The table (seconds per
meta-iteration, median of ``--repeats`` after ``--warmup``; peak resident memory) is printed;
``--figure`` draws both against the number of steps (with the numbers drawn in a .json beside
it) and ``--output`` keeps every measurement.
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import functools
import json
from typing import Callable, Dict, List, Optional

from absl import app, flags

if __package__:  # imported as benchmarks.vision_inner_steps (the tests)
  from benchmarks import peer_code, vision_step
else:  # run as a script: its folder is on sys.path
  import peer_code  # The scratch copy's errors.
  import vision_step  # The case runner and the authors' setup.

STEPS = flags.DEFINE_list("steps", ["5", "10", "20", "50"], "Numbers of inner steps.")
FIGURE = flags.DEFINE_string("figure", None, "Where to save the plot (PNG).")
OUTPUT = flags.DEFINE_string("output", None, "Where to write every measurement (JSON).")
# vision_step's --repeats and --warmup, with defaults that keep 50 inner steps within minutes.
flags.FLAGS.set_default("repeats", 3)
flags.FLAGS.set_default("warmup", 1)

DEFAULT, PLAIN = "l2f_tf default (sequential)", "l2f_tf plain (one tape)"
IMPLEMENTATIONS = (DEFAULT, PLAIN, vision_step.AUTHORS)


def sweep(steps: List[int], repeats: int, warmup: int, size: int, cap_mb: float,
          run_l2f: Callable = vision_step.run_case,
          run_authors: Optional[Callable] = None,
          echo: Callable = functools.partial(print, flush=True)) -> Dict:
  """{implementation: {steps: measurement}}, each measurement vision_step's result dict, or
  ``{"did_not_fit_mb": reached, "cap_mb": cap}`` or ``{"failed": why}``. ``run_authors(steps)``
  times the authors' code (None: not available); every case is echoed as it ends."""
  results: Dict[str, Dict[int, Dict]] = {name: {} for name in IMPLEMENTATIONS}
  for n in steps:
    cases = [(DEFAULT, lambda n=n: run_l2f(f"5,{n},0,0,1", repeats, "float32", warmup, size,
                                           cap_mb=cap_mb)),
             (PLAIN, lambda n=n: run_l2f(f"5,{n},0,0,0", repeats, "float32", warmup, size,
                                         cap_mb=cap_mb))]
    if run_authors is not None:
      cases.append((vision_step.AUTHORS, lambda n=n: run_authors(n)))
    for name, measure in cases:
      try:
        result = measure()
      except vision_step.MemoryCapExceeded as error:
        result = {"did_not_fit_mb": error.peak_mb, "cap_mb": error.cap_mb}
      except (RuntimeError, peer_code.ReferenceUnavailable) as error:
        result = {"failed": str(error)}
      results[name][n] = result
      echo(f"{n:>3} inner steps, {name}: {cell(result)}")
  return results


def cell(result: Optional[Dict]) -> str:
  """One table cell: 's s, GB GB', or why there is no figure."""
  if result is None:
    return "not run"
  if "did_not_fit_mb" in result:
    return f"did not fit (stopped at {result['did_not_fit_mb'] / 1024:.1f} GB)"
  if "failed" in result:
    return f"failed: {result['failed']}"
  return f"{result['median_s']:.2f} s, {result['peak_mb'] / 1024:.2f} GB"


def table(results: Dict[str, Dict[int, Dict]], steps: List[int]) -> List[str]:
  """Markdown rows: one per number of inner steps, a column per implementation."""
  names = [name for name in IMPLEMENTATIONS if results.get(name)]
  lines = ["| inner steps | " + " | ".join(f"{name}: s / meta-iteration, peak memory"
                                             for name in names) + " |",
           "| --- |" + " --- |" * len(names)]
  for n in steps:
    lines.append(f"| {n} | " + " | ".join(cell(results[name].get(n)) for name in names) + " |")
  return lines


def plot(path: str, results: Dict[str, Dict[int, Dict]], cap_mb: float) -> str:
  """Two panels, seconds and peak GB against inner steps, a line per implementation; a case that
  did not fit is an 'x' at the memory it had reached when it was stopped."""
  from l2f_tf import plots
  fig, axes = plots.plt.subplots(1, 2, figsize=(12, 4))
  for name in IMPLEMENTATIONS:
    timed = sorted((n, r) for n, r in results.get(name, {}).items() if "median_s" in r)
    stopped = sorted((n, r["did_not_fit_mb"] / 1024) for n, r in results.get(name, {}).items()
                     if "did_not_fit_mb" in r)
    line = None
    if timed:
      xs = [n for n, _ in timed]
      axes[0].plot(xs, [r["median_s"] for _, r in timed], marker="o", label=name)
      (line,) = axes[1].plot(xs, [r["peak_mb"] / 1024 for _, r in timed], marker="o",
                             label=name)
    if stopped:
      color = line.get_color() if line is not None else None
      axes[1].scatter([n for n, _ in stopped], [gb for _, gb in stopped], marker="x", s=80,
                      color=color, label=f"{name}: did not fit, stopped here")
  axes[1].axhline(cap_mb / 1024, color="gray", linestyle=":", label="memory cap")
  axes[0].set(xlabel="inner steps", ylabel="s / meta-iteration", title="time (median)")
  axes[1].set(xlabel="inner steps", ylabel="peak resident memory, GB", title="memory")
  for ax in axes:
    ax.set_xticks(sorted({n for r in results.values() for n in r}))
  plots.legend_outside(axes[1])
  fig.tight_layout()
  return plots.save_figure(fig, path)


def main(argv):
  del argv
  steps = [int(s) for s in STEPS.value]
  cap_mb = vision_step.MEMORY_CAP_GB.value * 1024
  size, threads = vision_step.SIZE_FLAG.value, vision_step.THREADS.value
  info = peer_code.machine_info()
  print(f"conv4-48, 5-way 5-shot, 15 queries/class, {size}x{size}x3, meta-batch 2, second "
        f"order, MAML+L2F, Adam; median of {vision_step.REPEATS.value} meta-iterations after "
        f"{vision_step.WARMUP.value} warm-up; machine: {info['cpu_model']}, {info['usable_cpus']} "
        f"usable CPUs, {peer_code.busy_cpus():.2f} busy at start; memory cap "
        f"{cap_mb / 1024:.1f} GB", flush=True)
  run_authors = None
  try:
    python, src, origin = vision_step.setup_reference(
        *vision_step.reference_location())
    print(f"authors' code: {origin}")
    run_authors = lambda n: vision_step.run_reference(
        python, src, vision_step.REPEATS.value, vision_step.WARMUP.value, threads or info["usable_cpus"],
        size, run=vision_step.capped_run(cap_mb), inner_steps=n)
  except peer_code.ReferenceUnavailable as error:
    print(vision_step.unavailable_line(str(error)))
  results = sweep(steps, vision_step.REPEATS.value, vision_step.WARMUP.value, size, cap_mb,
                  run_authors=run_authors)
  print("\n".join(table(results, steps)))
  if OUTPUT.value:
    with open(OUTPUT.value, "w") as f:
      json.dump({name: {str(n): r for n, r in by_steps.items()}
                 for name, by_steps in results.items()}, f, indent=1)
  if FIGURE.value:
    print(f"figure: {plot(FIGURE.value, results, cap_mb)}")


if __name__ == "__main__":
  app.run(main)
