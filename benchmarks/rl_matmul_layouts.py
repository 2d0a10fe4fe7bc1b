"""The navigation policy's matmuls in the two layouts a batched dense forward can take.

MAML-TRPO's curvature products on 2D navigation spend most of their time in batched matmuls
of the 64-64 tanh policy over 20 tasks x 2,000 rows: the 64x64 hidden layer and the thin
64 -> 2 mean head (docs/meta_rl.md, "Speed"). Each layer appears in three products: the
forward pass, the kernel's gradient (dW) and the input's gradient (dH). This times each of
them, as TensorFlow's compiled ops on the CPU, in the row layout that the Keras forward uses
(activations [T, rows, units]) and in the column layout (activations [T, units, rows], the
rows as the matmuls' long side), which a hand-written batched forward could use instead;
the two layouts alternate within each repeat, so both see the same machine.

  python benchmarks/rl_matmul_layouts.py [--num_tasks=20] [--rows=2000] [--repeats=3]
"""

import time

from absl import app, flags

import tensorflow as tf

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_integer("num_tasks", 20, "Tasks of the batch (the leading matmul axis).")
  flags.DEFINE_integer("rows", 2000, "Rows per task (20 trajectories x horizon 100).")
  flags.DEFINE_integer("hidden", 64, "Hidden units.")
  flags.DEFINE_integer("action_dim", 2, "Outputs of the mean head.")
  flags.DEFINE_integer("calls", 100, "Calls per timing.")
  flags.DEFINE_integer("repeats", 3, "Timings per op and layout; the fastest is printed.")


def ops(num_tasks: int, rows: int, hidden: int, outputs: int):
  """{(layer, pass): {layout: zero-argument compiled fn}} on random tensors."""
  rng = tf.random.Generator.from_seed(0)
  row = lambda *shape: rng.normal([num_tasks, *shape])
  col = lambda x: tf.transpose(x, [0, 2, 1]) + 0.0  # a copy in the column layout
  found = {}
  for layer, units in (("hidden 64x64", hidden), ("mean head 64->2", outputs)):
    h, w, d = row(rows, hidden), row(hidden, units), row(rows, units)
    hc, dc = col(h), col(d)
    found[(layer, "forward")] = {
        "row": lambda h=h, w=w: tf.matmul(h, w),
        "column": lambda hc=hc, w=w: tf.matmul(w, hc, transpose_a=True)}
    found[(layer, "dW")] = {
        "row": lambda h=h, d=d: tf.matmul(h, d, transpose_a=True),
        "column": lambda hc=hc, dc=dc: tf.matmul(hc, dc, transpose_b=True)}
    found[(layer, "dH")] = {
        "row": lambda d=d, w=w: tf.matmul(d, w, transpose_b=True),
        "column": lambda dc=dc, w=w: tf.matmul(w, dc)}
  return {key: {layout: tf.function(fn) for layout, fn in fns.items()}
          for key, fns in found.items()}


def milliseconds(fn, calls: int) -> float:
  start = time.perf_counter()
  for _ in range(calls):
    result = fn()
  result.numpy()
  return (time.perf_counter() - start) / calls * 1e3


def main(argv) -> None:
  del argv
  table = ops(FLAGS.num_tasks, FLAGS.rows, FLAGS.hidden, FLAGS.action_dim)
  for fns in table.values():
    for fn in fns.values():
      fn().numpy()  # trace and warm up
  best = {key: {"row": float("inf"), "column": float("inf")} for key in table}
  for _ in range(FLAGS.repeats):
    for key, fns in table.items():
      for layout, fn in fns.items():
        best[key][layout] = min(best[key][layout], milliseconds(fn, FLAGS.calls))
  print(f"{FLAGS.num_tasks} tasks x {FLAGS.rows} rows, fastest of {FLAGS.repeats} x "
        f"{FLAGS.calls} calls, ms per call")
  print("| layer | pass | row layout | column layout |")
  print("| --- | --- | --- | --- |")
  totals = {"row": 0.0, "column": 0.0}
  for (layer, name), times in best.items():
    print(f"| {layer} | {name} | {times['row']:.2f} | {times['column']:.2f} |")
    for layout in totals:
      totals[layout] += times[layout]
  print(f"| all | forward + dW + dH | {totals['row']:.2f} | {totals['column']:.2f} |")


if __name__ == "__main__":
  define_flags()
  app.run(main)
