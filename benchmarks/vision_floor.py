"""The convolution floor of a few-shot meta-iteration: how long its convolutions alone take.

  python benchmarks/vision_floor.py                    # the reference case, default path
  python benchmarks/vision_floor.py --case=5,5,0,0,0   # the plain (one tape) path
  python benchmarks/vision_floor.py --precision=bfloat16_conv

The step is built by ``benchmarks/vision_step.py``'s ``build_step`` (the same ``--case``,
``--precision``, ``--size`` and ``--backbone``) and traced, without running it. Every
convolution of its graph (Conv2D and the two backward kernels, in the graph and in the
functions it calls, such as the task loop's body) is listed with its shapes; the
backward-to-input kernels of the first layer, whose result (the gradient with respect to the
images) nothing reads and TensorFlow's graph optimizer removes, are left out. Each distinct
kernel and shape is then timed alone on random tensors (median of ``--kernel_repeats`` calls
after a warm-up, in a compiled loop), and the floor is the sum over the graph of count x time:
what the step would take if everything else (batch norm, pooling, activations, the optimizer)
were free and the convolutions ran back to back at the speed they run alone. Finally the whole
step is timed in the same process (median of ``--repeats`` after ``--warmup``), so both figures
come from one sitting.

It prints a table per kernel kind and layer shape (count, GFLOP, ms per call, achieved
GFLOP/s), the floor, the step's time and their ratio. First it prints how many operations the
traced graphs hold (the step's and those of the functions it calls) and the process's peak
resident memory once traced; ``--trace_only`` stops there (the graph grows with the number of
inner steps, which are unrolled: ``--case=5,50,0,0,1 --trace_only``).
"""

import l2f_tf  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)

import collections
import resource
import statistics
import time
from typing import Dict, Iterable, List, Tuple

from absl import app, flags

if __package__:  # imported as benchmarks.vision_floor (the tests)
  from benchmarks import peer_code, vision_step
else:  # run as a script: its folder is on sys.path
  import peer_code  # Machine facts.
  import vision_step  # The step builder.

KERNEL_REPEATS = flags.DEFINE_integer("kernel_repeats", 20, "Timed calls per distinct kernel.")
TRACE_ONLY = flags.DEFINE_boolean("trace_only", False, "Only trace the step and print the size "
                                  "of its graph and the memory after tracing.")

CONV_TYPES = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter")
Kernel = Tuple[str, Tuple[int, ...], Tuple[int, ...], Tuple[int, ...], str]
# (op type, input NHWC of the forward convolution, filter HWIO, strides, padding)


def _graphs(graph, functions, while_trips: int) -> Iterable:
  """(graph, runs): ``graph`` and, recursively, the graphs of the functions its ops call
  (while bodies, conditionals, function calls), each once, with how many times it runs per
  call of ``graph``: a while loop's body ``while_trips`` times (the step's only loop is the
  sequential path's task loop, one trip per task), anything else once."""
  seen = set()
  stack = [(graph, 1)]
  while stack:
    g, runs = stack.pop()
    yield g, runs
    for op in g.get_operations():
      for attr in ("body", "cond", "f", "then_branch", "else_branch"):
        try:
          name = op.get_attr(attr).name
        except (ValueError, AttributeError):
          continue
        function = functions.get(name)
        if name not in seen and getattr(function, "graph", None) is not None:
          seen.add(name)
          trips = while_trips if op.type in ("While", "StatelessWhile") and attr == "body" else 1
          stack.append((function.graph, runs * trips))


def convolutions(graph, functions, image_channels: int, while_trips: int) -> Dict[Kernel, int]:
  """{kernel: how many times one call of the graph runs it}; the forward convolution's input
  shape identifies each kernel's size. Backward-to-input kernels that produce an image gradient
  (``image_channels`` channels) are left out: nothing reads them."""
  counts: Dict[Kernel, int] = collections.Counter()
  for g, runs in _graphs(graph, functions, while_trips):
    for op in g.get_operations():
      if op.type not in CONV_TYPES:
        continue
      if op.type == "Conv2D":
        x_shape, w_shape = op.inputs[0].shape, op.inputs[1].shape
      elif op.type == "Conv2DBackpropInput":
        x_shape, w_shape = op.outputs[0].shape, op.inputs[1].shape
        if x_shape[-1] == image_channels and w_shape[2] == image_channels:
          continue
      else:
        x_shape, w_shape = op.inputs[0].shape, op.outputs[0].shape
      if not (x_shape.is_fully_defined() and w_shape.is_fully_defined()):
        raise ValueError(f"{op.name}: shapes must be static, got {x_shape} and {w_shape}")
      strides = tuple(op.get_attr("strides"))
      padding = op.get_attr("padding").decode()
      counts[(op.type, tuple(x_shape.as_list()), tuple(w_shape.as_list()), strides,
              padding)] += runs
  return counts


def flops(kernel: Kernel) -> float:
  """Multiply-adds x 2 of the forward convolution, which each of the three kernels matches:
  2 * N * H_out * W_out * kh * kw * C_in * C_out."""
  _, (n, h, w, _), (kh, kw, cin, cout), strides, padding = kernel
  if padding == "SAME":
    h_out, w_out = -(-h // strides[1]), -(-w // strides[2])
  else:
    h_out, w_out = (h - kh) // strides[1] + 1, (w - kw) // strides[2] + 1
  return 2.0 * n * h_out * w_out * kh * kw * cin * cout


def time_kernel(kernel: Kernel, repeats: int, dtype) -> float:
  """Median seconds of one call of ``kernel`` on random tensors, timed over a loop of
  ``repeats`` calls in one tf.function (one dispatch, no Python between the calls)."""
  import tensorflow as tf
  kind, x_shape, w_shape, strides, padding = kernel
  x = tf.random.stateless_normal(x_shape, seed=[1, 2], dtype=dtype)
  w = tf.random.stateless_normal(w_shape, seed=[3, 4], dtype=dtype)
  y = tf.nn.conv2d(x, w, strides, padding)
  dy = tf.random.stateless_normal(y.shape, seed=[5, 6], dtype=dtype)

  def once(x, dy):
    if kind == "Conv2D":
      return tf.nn.conv2d(x, w, strides, padding)
    if kind == "Conv2DBackpropInput":
      return tf.raw_ops.Conv2DBackpropInput(input_sizes=x_shape, filter=w, out_backprop=dy,
                                            strides=strides, padding=padding)
    return tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=w_shape, out_backprop=dy,
                                           strides=strides, padding=padding)

  @tf.function
  def loop(n):
    total = tf.constant(0.0, dtype)
    for _ in tf.range(n):
      # Each call waits for the previous one (back to back, never hoisted out of the loop);
      # identity passes the tensors on without a copy.
      with tf.control_dependencies([total]):
        xi, dyi = tf.identity(x), tf.identity(dy)
      total += tf.reduce_sum(once(xi, dyi)[..., :1])
    return total

  float(loop(tf.constant(2)))
  samples = []
  for _ in range(3):
    start = time.perf_counter()
    float(loop(tf.constant(repeats)))
    samples.append((time.perf_counter() - start) / repeats)
  return statistics.median(samples)


def layer_name(kernel: Kernel) -> str:
  _, (n, h, w, cin), (kh, kw, _, cout), _, _ = kernel
  return f"{n}x{h}x{w}x{cin} -> {cout}, {kh}x{kw}"


def totals(counts: Dict[Kernel, int], seconds: Dict[Kernel, float]) -> Tuple[float, float]:
  """(FLOPs of every convolution of the step, seconds of them all timed alone)."""
  return (sum(flops(k) * c for k, c in counts.items()),
          sum(seconds[k] * c for k, c in counts.items()))


def table(counts: Dict[Kernel, int], seconds: Dict[Kernel, float]) -> List[str]:
  """Markdown rows per kernel and shape, then the total."""
  lines = ["| kernel | input, filter | calls | GFLOP per call | ms per call | GFLOP/s |",
           "| --- | --- | --- | --- | --- | --- |"]
  for kernel in sorted(counts, key=lambda k: (k[0], -flops(k))):
    f, s = flops(kernel), seconds[kernel]
    lines.append(f"| {kernel[0]} | {layer_name(kernel)} | {counts[kernel]} | {f / 1e9:.3f} | "
                 f"{1e3 * s:.2f} | {f / s / 1e9:.0f} |")
  total_flops, floor = totals(counts, seconds)
  lines.append(f"| all | | {sum(counts.values())} | {total_flops / 1e9:.1f} | "
               f"{1e3 * floor:.0f} | {total_flops / floor / 1e9:.0f} |")
  return lines


def main(argv):
  del argv
  import tensorflow as tf
  case = vision_step.CASE.value or "5,5,0,0,1"
  backbone, size = vision_step.BACKBONE.value, vision_step.SIZE_FLAG.value
  precision_name = vision_step.PRECISION.value
  step, episode, meta_batch = vision_step.build_flag_step(case)
  concrete = step.get_concrete_function(episode)
  functions = concrete.graph._functions  # pylint: disable=protected-access
  operations = sum(len(g.get_operations()) for g, _ in _graphs(concrete.graph, functions, 1))
  print(f"traced: {operations} operations in the step's graphs; peak resident memory "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB", flush=True)
  if TRACE_ONLY.value:
    return
  counts = convolutions(concrete.graph, functions, image_channels=3, while_trips=meta_batch)
  if not counts:
    raise SystemExit("No convolution in the step's graph.")
  dtype = tf.bfloat16 if precision_name in ("bfloat16_conv", "mixed_bfloat16") else tf.float32
  info = peer_code.machine_info()
  print(f"case {case} ({backbone}, {precision_name}, "
        f"{size}x{size}); machine: {info['cpu_model']}, {info['usable_cpus']} usable CPUs, "
        f"{peer_code.busy_cpus():.2f} busy at start", flush=True)
  seconds = {k: time_kernel(k, KERNEL_REPEATS.value, dtype) for k in counts}
  print("\n".join(table(counts, seconds)))
  total_flops, floor = totals(counts, seconds)
  times, _ = vision_step.time_step(step, episode, vision_step.REPEATS.value,
                                   vision_step.WARMUP.value)
  step_s = statistics.median(times)
  best = max(flops(k) / seconds[k] for k in counts)
  print(f"the whole step: {step_s:.2f} s (median of {len(times)}), {total_flops / 1e9:.0f} GFLOP "
        f"of convolutions, {total_flops / step_s / 1e9:.0f} GFLOP/s over the step")
  print(f"convolutions timed alone, back to back: {floor:.2f} s ({floor / step_s:.0%} of the "
        f"step)")
  print(f"convolutions at the best rate of any kernel alone ({best / 1e9:.0f} GFLOP/s): "
        f"{total_flops / best:.2f} s ({total_flops / best / step_s:.0%} of the step)")


if __name__ == "__main__":
  app.run(main)
