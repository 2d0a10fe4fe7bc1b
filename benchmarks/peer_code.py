"""A peer's published code and a venv to run it, in a scratch folder outside the repository.

The side-by-side benchmarks (`vision_step.py --compare_reference`, `glyphs_seeds.py`,
`rl_navigation.py --compare_reference`) run another project's code in a process of its own.
`setup` brings that code into ``folder``/src, from a local git snapshot (``git_dir``: every file
of its HEAD that the snapshot holds, so a snapshot without its large binary files still works)
or with ``git clone --depth 1 url``, and makes ``folder``/venv with the packages the peer
imports. Nothing of it enters the repository; any failure is one `ReferenceUnavailable` line.
Pure Python: no TensorFlow, no torch.
"""

import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import flags

# The flags every side-by-side script shares, defined once (two scripts that define the same
# flag cannot be imported into one process, as the tests do).
COMPARE = flags.DEFINE_boolean("compare_reference", False,
                               "Time l2f_tf and the peer's published code side by side (the "
                               "script's docstring says which code and settings).")
ROUNDS = flags.DEFINE_integer("rounds", 1, "With --compare_reference: how many times to run the "
                              "whole comparison (each side once per round, one after the "
                              "other); with more than one, the per-round ratios and their median "
                              "follow. The machine's speed drifts by 10% between runs.")
REFERENCE_DIR = flags.DEFINE_string("reference_dir", None,
                                    "Scratch folder for the peer's code (src/) and its venv "
                                    "(venv/); never in the repository. Default: "
                                    "~/.cache/l2f_tf/<the script's folder name>.")
REFERENCE_GIT_DIR = flags.DEFINE_string("reference_git_dir", None,
                                        "A local git snapshot of the peer's code to extract it "
                                        "from instead of cloning it (no network).")
REFERENCE_URL = flags.DEFINE_string("reference_url", None, "Where to clone the peer's code from "
                                    "(git clone --depth 1). Default: the script's peer.")


def location(folder_name: str, url: str) -> Tuple[str, Optional[str], str]:
  """(scratch folder, local snapshot or None, clone URL) from the flags, with the script's
  defaults: ~/.cache/l2f_tf/``folder_name`` and ``url``."""
  folder = REFERENCE_DIR.value or os.path.join(os.path.expanduser("~"), ".cache", "l2f_tf",
                                               folder_name)
  return folder, REFERENCE_GIT_DIR.value, REFERENCE_URL.value or url


class ReferenceUnavailable(Exception):
  """The peer's code or its venv could not be set up or run; the message says why."""


def checked(run: Callable, command: List[str], what: str, **kwargs):
  """``run(command)``'s completed process; a failure raises ReferenceUnavailable naming
  ``what`` and the last line the command printed."""
  try:
    out = run(command, capture_output=True, text=True, **kwargs)
  except (OSError, subprocess.SubprocessError) as error:
    raise ReferenceUnavailable(f"{what}: {error}") from error
  if out.returncode:
    lines = (out.stderr or out.stdout or "").strip().splitlines() or [f"exit {out.returncode}"]
    raise ReferenceUnavailable(f"{what}: {lines[-1]}")
  return out


def _extract_snapshot(git_dir: str, destination: str, run: Callable) -> Tuple[str, List[str]]:
  """Writes every file of ``git_dir``'s HEAD that the snapshot holds to ``destination``:
  (the commit, the paths whose contents are absent)."""
  commit = checked(run, ["git", "--git-dir", git_dir, "rev-parse", "HEAD"],
                   "reading the local snapshot").stdout.strip()
  listing = checked(run, ["git", "--git-dir", git_dir, "ls-tree", "-r", "-z", "HEAD"],
                    "listing the local snapshot").stdout
  absent = []
  for entry in filter(None, listing.split("\0")):
    meta, path = entry.split("\t", 1)
    _, kind, blob = meta.split()
    if kind != "blob":
      continue
    content = run(["git", "--git-dir", git_dir, "cat-file", "blob", blob], capture_output=True)
    if content.returncode:
      absent.append(path)
      continue
    target = os.path.join(destination, path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
      f.write(content.stdout)
  return commit, absent


def fetch_source(folder: str, git_dir: Optional[str], url: str, marker: str,
                 run: Callable = subprocess.run) -> Tuple[str, str]:
  """The peer's code in ``folder``/src, fetched on first use (``marker``: a file it must hold):
  (its path, where it came from)."""
  src = os.path.join(folder, "src")
  origin_file = os.path.join(src, ".l2f_tf_origin")
  if os.path.exists(os.path.join(src, marker)) and os.path.exists(origin_file):
    with open(origin_file) as f:
      return src, f.read().strip()
  os.makedirs(folder, exist_ok=True)
  partial = src + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  if git_dir:
    commit, absent = _extract_snapshot(git_dir, partial, run)
    origin = f"local git snapshot, commit {commit[:8]}"
    if absent:
      origin += f" (without {len(absent)} absent file(s): {', '.join(absent[:3])})"
  else:
    checked(run, ["git", "clone", "--depth", "1", url, partial],
            f"git clone {url} (no network? pass --reference_git_dir)", timeout=300)
    commit = checked(run, ["git", "-C", partial, "rev-parse", "HEAD"], "git rev-parse")
    origin = f"{url}, commit {commit.stdout.strip()[:8]}"
  if not os.path.exists(os.path.join(partial, marker)):
    raise ReferenceUnavailable(f"the fetched code has no {marker}: is it the right project?")
  with open(os.path.join(partial, ".l2f_tf_origin"), "w") as f:
    f.write(origin + "\n")
  shutil.rmtree(src, ignore_errors=True)
  os.rename(partial, src)
  return src, origin


def venv_python(folder: str, requirements: Sequence[str], imports: str,
                run: Callable = subprocess.run) -> str:
  """The Python of the scratch venv ``folder``/venv holding ``requirements``, made on first use
  (``imports``: the modules whose import proves it works, e.g. "torch, numpy")."""
  venv = os.path.join(folder, "venv")
  python = os.path.join(venv, "bin", "python")
  probe = [python, "-c", f"import {imports}"]
  if os.path.exists(python) and run(probe, capture_output=True).returncode == 0:
    return python
  print(f"Setting up a scratch venv in {venv} with {' '.join(requirements)} (nothing of it "
        "enters the repository). This takes a few minutes once.", flush=True)
  checked(run, [sys.executable, "-m", "venv", venv], "python -m venv")
  checked(run, [python, "-m", "pip", "install", "--quiet"] + list(requirements),
          f"pip install {' '.join(requirements)} into the scratch venv")
  checked(run, probe, f"import {imports} in the scratch venv")
  return python


def setup(folder: str, git_dir: Optional[str], url: str, marker: str,
          requirements: Sequence[str], imports: str,
          run: Callable = subprocess.run) -> Tuple[str, str, str]:
  """(venv python, path of the peer's code, where it came from); raises ReferenceUnavailable."""
  try:
    src, origin = fetch_source(folder, git_dir, url, marker, run)
    return venv_python(folder, requirements, imports, run), src, origin
  except ReferenceUnavailable:
    raise
  except Exception as error:  # a broken scratch folder must not crash the benchmark
    raise ReferenceUnavailable(f"{type(error).__name__}: {error}") from error


def machine_info(cpuinfo: Optional[str] = None) -> Dict:
  """CPU model, physical cores, logical CPUs (from /proc/cpuinfo) and the oneDNN switch."""
  if cpuinfo is None:
    try:
      with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    except OSError:
      cpuinfo = ""
  model, logical, cores, cores_per_socket = "unknown", 0, set(), {}
  physical_id = core_id = None
  for line in cpuinfo.splitlines() + [""]:
    key, _, value = (part.strip() for part in line.partition(":"))
    if key == "processor":
      logical += 1
    elif key == "model name" and model == "unknown":
      model = value
    elif key == "physical id":
      physical_id = value
    elif key == "core id":
      core_id = value
    elif key == "cpu cores" and value.isdigit():
      cores_per_socket[physical_id] = int(value)
    elif not key:  # a blank line closes one processor's block
      if core_id is not None:
        cores.add((physical_id, core_id))
      physical_id = core_id = None
  logical = logical or os.cpu_count() or 0
  physical = len(cores) or sum(cores_per_socket.values()) or logical
  try:
    usable = len(os.sched_getaffinity(0))
  except AttributeError:
    usable = logical
  return {"cpu_model": model, "physical_cores": physical, "logical_cpus": logical,
          "usable_cpus": usable,
          "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")}


def busy_cpus(seconds: float = 1.0) -> float:
  """How many CPUs other processes keep busy now (from /proc/stat over ``seconds``; the load
  average would still count a benchmark that just ended)."""
  def sample():
    with open("/proc/stat") as f:
      values = [int(v) for v in f.readline().split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)  # busy = all but idle and iowait
  try:
    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
  except (OSError, ValueError, IndexError):
    return float("nan")
  return (busy1 - busy0) / max(total1 - total0, 1) * (os.cpu_count() or 1)
