"""Counts the tf.function traces of each test (``pytest --trace-report=FILE``, docs/testing.md).

Tracing a tf.function (and, for ``jit_compile=True``, compiling what it traced with XLA) is most
of the time of a short end-to-end test. With ``--trace-report=FILE`` every test appends one JSON
line to FILE: its node id, the number of concrete functions it traced (nested ones included),
how many of the outermost ones are XLA-compiled (each is compiled once, at its first call), and
the seconds spent tracing the outermost ones. Traces of subprocesses are not counted.

  python -m pytest -q -n 2 tests --trace-report=/tmp/traces.jsonl
  python tests/trace_counts.py /tmp/traces.jsonl     # the 20 tests with the most traces
"""

import contextlib
import json
import sys
from time import perf_counter as _clock  # bound now: tests may patch time.perf_counter
from typing import Dict, Iterator

_counts: Dict[str, float] = {}


def _install() -> None:
  """Wraps TensorFlow's one place that turns a Python function into a traced graph."""
  from tensorflow.python.eager.polymorphic_function import attributes, tracing_compilation
  from tensorflow.python.framework import ops
  create = tracing_compilation._create_concrete_function
  if getattr(create, "counts_traces", False):
    return

  def counted(function_type, type_context, func_graph, tracing_options):
    outermost = not ops.inside_function()
    started = _clock()
    try:
      return create(function_type, type_context, func_graph, tracing_options)
    finally:
      _counts["traces"] = _counts.get("traces", 0) + 1
      if outermost:
        _counts["trace_seconds"] = _counts.get("trace_seconds", 0.0) + (
            _clock() - started)
        if (tracing_options.attributes or {}).get(attributes.XLA_COMPILE):
          _counts["xla_compiled"] = _counts.get("xla_compiled", 0) + 1

  counted.counts_traces = True
  tracing_compilation._create_concrete_function = counted


@contextlib.contextmanager
def recorded(nodeid: str, path: str) -> Iterator[None]:
  """Counts the traces of the block and appends them to ``path`` as one JSON line."""
  _install()
  _counts.clear()
  try:
    yield
  finally:
    line = {"test": nodeid, "traces": int(_counts.get("traces", 0)),
            "xla_compiled": int(_counts.get("xla_compiled", 0)),
            "trace_seconds": round(_counts.get("trace_seconds", 0.0), 2)}
    with open(path, "a") as f:  # one short write per line: safe from two xdist workers
      f.write(json.dumps(line) + "\n")


def summary(path: str, top: int = 20) -> str:
  with open(path) as f:
    lines = [json.loads(line) for line in f if line.strip()]
  lines.sort(key=lambda l: (-l["traces"], -l["trace_seconds"]))
  rows = [f"{'traces':>6} {'xla':>4} {'trace s':>8}  test"]
  rows += [f"{l['traces']:6d} {l['xla_compiled']:4d} {l['trace_seconds']:8.1f}  {l['test']}"
           for l in lines[:top]]
  total = sum(l["traces"] for l in lines)
  seconds = sum(l["trace_seconds"] for l in lines)
  rows.append(f"{total} traces, {seconds:.0f} s tracing, in {len(lines)} tests")
  return "\n".join(rows)


if __name__ == "__main__":
  print(summary(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 20))
