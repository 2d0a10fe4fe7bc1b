"""Where one few-shot meta-iteration spends its time: a TensorFlow profiler trace, top ops.

  python benchmarks/vision_profile.py                     # reference config, default path
  python benchmarks/vision_profile.py --case=5,5,0,0,0    # the plain (one tape) path
  python benchmarks/vision_profile.py --batch_norm=task_norm_i  # another batch-norm mode
  tensorboard --logdir=/tmp/l2f_tf_vision_profile         # the trace, in the Profile tab

The case is that of benchmarks/vision_step.py (shots, inner steps, first order, jit,
sequential; default 5,5,0,0,1), as are ``--precision``, ``--batch_norm`` and ``--backbone``;
the step is built by its ``build_step``, warmed up, then ``--iterations`` meta-iterations run
under ``tf.profiler.experimental``. The trace is written to ``--logdir`` and summarised with
TensorFlow's own converter (the profiler's "framework_op_stats" tool): self time per layer kind
(conv, bn, relu, pool, logits; from the op types and names), per op type and per op, summed
over the profiled iterations and divided by their number, so the figures are per
meta-iteration. The percentages are of the ops' total self time on the host (the two worker
threads' time, not wall time).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import collections
import glob
import json
import os
import re
import time
from typing import Dict, List, Tuple

from absl import app, flags

import vision_step  # The benchmark's step builder, next to this script (on sys.path).

ITERATIONS = flags.DEFINE_integer("iterations", 2, "Meta-iterations traced.")
TOP = flags.DEFINE_integer("top", 25, "Rows of the per-op table.")
LOGDIR = flags.DEFINE_string("logdir", "/tmp/l2f_tf_vision_profile", "Where the trace goes.")


def op_rows(xplane_path: str) -> List[Dict]:
  """The profiler's framework_op_stats table as dicts (type, operation, occurrences,
  total_self_time in microseconds)."""
  from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
  data, ok = plugin.xspace_to_tools_data([xplane_path], "framework_op_stats", {})
  if not ok:
    raise RuntimeError(f"the profiler could not convert {xplane_path}: {data[:200]!r}")
  table = json.loads(data)[0]
  ids = [c["id"] for c in table["cols"]]
  rows = []
  for row in table["rows"]:
    values = dict(zip(ids, (cell.get("v") if cell else None for cell in row["c"])))
    if values.get("operation") == "IDLE":
      continue
    rows.append(values)
  return rows


_KIND_OF_TYPE = {"Conv2D": "conv", "BatchNorm": "bn", "MaxPool": "pool", "LeakyRelu": "relu"}


def layer_kind(op_name: str, op_type: str) -> str:
  """conv / bn / relu / pool / logits or other: from the op's type where it says (a custom
  gradient's ops lose the layer's name), else from conv4's layer names in the op's name."""
  for part, kind in _KIND_OF_TYPE.items():
    if part in op_type:
      return kind
  match = re.search(r"block\d+_(conv|bn|relu|pool)", op_name)
  if match:
    return match.group(1)
  return "logits" if "logits" in op_name else "other"


def summarise(rows: List[Dict], iterations: int, top: int) -> Tuple[List[str], ...]:
  """Three markdown tables: self time per layer kind, per op type, and the ``top`` ops."""
  total = sum(r["total_self_time"] for r in rows) or 1.0
  by_layer: Dict[str, float] = collections.defaultdict(float)
  for r in rows:
    by_layer[layer_kind(r["operation"], r["type"])] += r["total_self_time"]
  layers = ["| layer kind | ms / iteration | share |", "| --- | --- | --- |"]
  for name, us in sorted(by_layer.items(), key=lambda kv: -kv[1]):
    layers.append(f"| {name} | {us / 1e3 / iterations:.1f} | {100 * us / total:.1f}% |")
  by_type: Dict[str, List[float]] = collections.defaultdict(lambda: [0.0, 0])
  for r in rows:
    by_type[r["type"]][0] += r["total_self_time"]
    by_type[r["type"]][1] += r["occurrences"]
  types = ["| op type | ms / iteration | share | calls / iteration |", "| --- | --- | --- | --- |"]
  for name, (us, calls) in sorted(by_type.items(), key=lambda kv: -kv[1][0])[:top]:
    types.append(f"| {name} | {us / 1e3 / iterations:.1f} | {100 * us / total:.1f}% | "
                 f"{calls / iterations:.0f} |")
  ops = ["| op | type | ms / iteration | share |", "| --- | --- | --- | --- |"]
  for r in sorted(rows, key=lambda r: -r["total_self_time"])[:top]:
    ops.append(f"| {r['operation'][-90:]} | {r['type']} | "
               f"{r['total_self_time'] / 1e3 / iterations:.1f} | "
               f"{100 * r['total_self_time'] / total:.1f}% |")
  return layers, types, ops


def main(argv):
  del argv
  import tensorflow as tf
  case = vision_step.CASE.value or "5,5,0,0,1"  # vision_step's flags
  precision_name = vision_step.PRECISION.value
  step, episode, _ = vision_step.build_flag_step(case)
  for _ in range(2):
    float(step(episode))
  logdir = os.path.abspath(LOGDIR.value)
  tf.profiler.experimental.start(logdir)
  start = time.perf_counter()
  for _ in range(ITERATIONS.value):
    float(step(episode))
  wall = (time.perf_counter() - start) / ITERATIONS.value
  tf.profiler.experimental.stop()
  path = max(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
             key=os.path.getmtime)
  rows = op_rows(path)
  layers, types, ops = summarise(rows, ITERATIONS.value, TOP.value)
  busy = sum(r["total_self_time"] for r in rows) / 1e6 / ITERATIONS.value
  print(f"case {case} ({precision_name}): {wall:.2f} s wall per meta-iteration under the "
        f"profiler, {busy:.2f} s of op self time; trace: {path}")
  print("\n".join(layers))
  print()
  print("\n".join(types))
  print()
  print("\n".join(ops))


if __name__ == "__main__":
  app.run(main)
