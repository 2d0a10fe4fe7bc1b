"""A full disk during a run: the real command trains a tiny sinusoid into a small tmpfs, fills it,
says so in one line, leaves its folder intact, and finishes exactly once space is back.

A driver (:data:`DRIVER`) runs in a private mount namespace (``unshare -m``, as root; CI runs as
root), so the host's mounts are untouched. It mounts a tmpfs, runs the same command four times
into it, growing the tmpfs (``mount -o remount,size=``) before each, and copies the folder out
after each:

1. ``during_training``: the disk fills at a checkpoint (or a TensorBoard write) part way
   through the 8 meta-iterations;
2. ``still_full``: the same command without freeing space fails the same way, losing nothing;
3. ``after_training``: some space freed, not enough: training resumes and finishes, then the
   disk fills during the evaluation, the SavedModel export or the figure;
4. ``resumed``: space is back: only the unfinished stages run.

The two sizes are drawn from :data:`SEED` (``L2F_DISK_FULL_SEED=<n>`` draws others; a failure
names them). Meanwhile an uninterrupted reference run trains in a normal folder.

Every failing run must exit 1 with one line (``No space left on device while writing <path>
(<what>): free some space on <mount point>, then run the same command to resume (the last
checkpoint, ckpt-N, is intact).``) and no traceback; the checkpoint it names must be the
folder's latest and equal the reference's of that step bit for bit; the atomic files must be
whole and the only temporary files left TensorFlow's ``ckpt-N_temp/``. The last run must end as
the reference does (benchmarks/kill_resume.py's comparison: every tensor of the final checkpoint
bit for bit, results.json but train_seconds, the SavedModel's predictions, the figure,
stages.json, no temporary file left).
"""

import concurrent.futures
import json
import os
import random
import re
import subprocess
from typing import Dict, Optional

import pytest

from benchmarks import kill_resume

pytestmark = pytest.mark.slow

SEED = 0  # The sizes' seed (L2F_DISK_FULL_SEED overrides it).
ITERATIONS = 8
# The tiny sinusoid of benchmarks/kill_resume.py, keeping every checkpoint, so that the folder
# grows by one checkpoint (32 KiB in tmpfs pages) per meta-iteration: ~20 KiB before the first
# checkpoint, ~280 KiB after training, ~960 KiB at the end (the SavedModel is ~500 KiB).
EXPERIMENT = kill_resume.Experiment("sinusoid", "gin/sinusoid/l2f_5shot.gin", (
    "Runner.checkpoint_every = 1", f"Runner.max_checkpoints = {ITERATIONS}",
    "Runner.log_every_seconds = 0", f"Trainer.num_iterations = {ITERATIONS}",
    "Trainer.summary_every = 0", "Trainer.jit_compile = False", "Trainer.landscape = False",
    "SinusoidRegression.meta_batch_size = 3", "run_experiment.num_eval_tasks = 4"),
    ITERATIONS, "test_tasks.png")
# Sizes (KiB) drawn uniformly: full after 1 to 7 checkpoints; full after training, before the
# end (the reference's measured sizes, with margins).
DURING_TRAINING = (56, 248)
AFTER_TRAINING = (320, 930)
GROWN = 256 * 1024
DRIVER = r"""
set -u
mount -t tmpfs -o size=4k tmpfs "$MNT" || exit 97
for attempt in $ATTEMPTS; do
  size=${attempt#*:}
  attempt=${attempt%:*}
  mount -o remount,size="${size}k" "$MNT" || exit 98
  "$@" > "$OUT/$attempt.log" 2>&1
  echo $? > "$OUT/$attempt.rc"
  cp -a "$MNT/run" "$OUT/$attempt"
done
"""
LINE = re.compile(
    r"\] (?P<reason>No space left on device) while writing (?P<path>\S+) \((?P<what>[^)]+)\): "
    r"free some space on (?P<mount>\S+), then run the same command to resume \("
    r"(?:the last checkpoint, (?P<checkpoint>ckpt-\d+), is intact|no checkpoint was written "
    r"yet, so it starts afresh)\)\.$")
WHOLE_FILES = ("operative_config.gin", "settings.json", "results.json", "stages.json",
               "test_tasks.json")


def seed() -> int:
  return int(os.environ.get("L2F_DISK_FULL_SEED", SEED))


def sizes() -> Dict[str, int]:
  """where the disk fills -> tmpfs size in KiB (whole 4 KiB pages), drawn from :func:`seed`."""
  rng = random.Random(seed())
  return {"during_training": 4 * rng.randint(*(n // 4 for n in DURING_TRAINING)),
          "after_training": 4 * rng.randint(*(n // 4 for n in AFTER_TRAINING))}


def can_mount_tmpfs(folder: str) -> Optional[str]:
  """Why a private tmpfs cannot be mounted here (None: it can)."""
  os.makedirs(folder)
  try:
    done = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs "
                           f"{folder}"], capture_output=True, text=True, timeout=60)
  except FileNotFoundError:
    return "unshare is not installed"
  return None if done.returncode == 0 else f"unshare -m / mount failed: {done.stderr.strip()}"


def reference(work: str) -> str:
  """The uninterrupted run, in a normal folder."""
  root = os.path.join(work, "reference")
  with open(os.path.join(work, "reference.log"), "w") as log:
    done = subprocess.run(kill_resume.command(EXPERIMENT, root), cwd=kill_resume.REPO,
                          env=dict(os.environ, PYTHONPATH=kill_resume.REPO), stdout=log,
                          stderr=subprocess.STDOUT, timeout=600)
  assert done.returncode == 0, open(log.name).read()[-3000:]
  return root


def attempts(work: str, plan: Dict[str, int]) -> str:
  """Runs :data:`DRIVER` with the attempts ``plan`` (name -> tmpfs KiB, in order); returns its
  folder, which holds each attempt's log, exit status and copied run folder."""
  out, mount = os.path.join(work, "attempts"), os.path.join(work, "tmpfs")
  os.makedirs(out)
  os.makedirs(mount, exist_ok=True)
  env = dict(os.environ, PYTHONPATH=kill_resume.REPO, MNT=mount, OUT=out,
             ATTEMPTS=" ".join(f"{name}:{size}" for name, size in plan.items()))
  done = subprocess.run(["unshare", "-m", "sh", "-c", DRIVER, "driver",
                         *kill_resume.command(EXPERIMENT, os.path.join(mount, "run"))],
                        cwd=kill_resume.REPO, env=env, capture_output=True, text=True,
                        timeout=1200)
  assert done.returncode == 0, f"the driver failed ({done.returncode}): {done.stderr}"
  return out


def attempt(out: str, name: str):
  """(exit status, log text, copied run folder) of one attempt."""
  with open(os.path.join(out, f"{name}.rc")) as f:
    returncode = int(f.read())
  with open(os.path.join(out, f"{name}.log"), errors="replace") as f:
    return returncode, f.read(), os.path.join(out, name)


def latest_checkpoint(root: str) -> Optional[str]:
  step, _ = kill_resume.folder_state(root)
  return f"ckpt-{step}" if step else None


def check_full_attempt(out: str, name: str, reference_root: str, context: str) -> Dict:
  """The checks of a run that met the full disk; returns what its line says."""
  returncode, log, root = attempt(out, name)
  tail = f"{context}, {name} attempt:\n{log[-4000:]}"
  assert returncode == 1, tail
  assert "Traceback" not in log, tail
  # One line says it; everything else is the run's INFO lines (progress, resuming...).
  full = [line for line in log.splitlines() if not re.match(r"I\d{4} ", line)]
  assert len(full) == 1 and "No space left on device" in full[0], tail
  match = LINE.search(full[0])
  assert match, tail
  said = match.groupdict()
  assert said["mount"] == os.path.join(os.path.dirname(out), "tmpfs"), tail
  # The checkpoint the line names is the folder's latest, and it reads back bit for bit as the
  # reference's of the same step (the reference keeps every checkpoint).
  assert said["checkpoint"] == latest_checkpoint(root), tail
  if said["checkpoint"]:
    tensors = [kill_resume._tensors(os.path.join(r, "checkpoints", said["checkpoint"]))
               for r in (reference_root, root)]
    assert tensors[0], tail
    assert not kill_resume._compare_tensors(*tensors, said["checkpoint"]), tail
  for file_name in WHOLE_FILES:  # Written atomically: absent, or whole.
    path = os.path.join(root, file_name)
    if os.path.exists(path) and file_name.endswith(".json"):
      with open(path) as f:
        json.load(f)
  with open(os.path.join(root, "operative_config.gin")) as f, \
      open(os.path.join(reference_root, "operative_config.gin")) as g:
    assert f.read() == g.read(), tail
  # Only TensorFlow's checkpoint parts are left (the next start removes them): the atomic
  # writers remove their temporary files themselves.
  said["leftovers"] = kill_resume.temporary_files(root)
  assert all(re.match(r"checkpoints/ckpt-\d+_temp(/|$)", p) for p in said["leftovers"]), tail
  print(f"{context}, {name}: {said}")
  return said


def check_resumed(out: str, reference_root: str, context: str) -> None:
  """The last run ends as the reference."""
  returncode, log, root = attempt(out, "resumed")
  assert returncode == 0, f"{context}, resumed attempt:\n{log[-4000:]}"
  problems = {check: found for check, found in
              kill_resume.compare(EXPERIMENT, reference_root, root).items() if found}
  assert not problems, f"{context}: the resumed run differs from the reference: {problems}"


def test_a_full_disk_is_one_line_and_the_same_command_resumes_exactly(tmp_path):
  work = str(tmp_path)
  why_not = can_mount_tmpfs(os.path.join(work, "probe_mnt"))
  if why_not:
    pytest.skip(f"needs root and a private mount namespace: {why_not}")
  drawn = sizes()
  plan = {"during_training": drawn["during_training"], "still_full": drawn["during_training"],
          "after_training": drawn["after_training"], "resumed": GROWN}
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    reference_run = pool.submit(reference, work)
    out = pool.submit(attempts, work, plan).result()
    reference_root = reference_run.result()
  context = f"seed {seed()}, tmpfs sizes {drawn} KiB"

  # During training: part way, at a checkpoint or a training summary.
  said = check_full_attempt(out, "during_training", reference_root, context)
  step = int((said["checkpoint"] or "ckpt-0").split("-")[1])
  assert 1 <= step < ITERATIONS, f"{context}: {said}"
  assert re.search(r"checkpoint|TensorBoard", said["what"]), f"{context}: {said}"
  # The same command on a still-full disk fails the same way and loses nothing.
  again = check_full_attempt(out, "still_full", reference_root, context)
  assert again["checkpoint"] == said["checkpoint"], f"{context}: {said} then {again}"
  # Not enough space freed: training finishes, then the evaluation, export or figure fills it.
  said = check_full_attempt(out, "after_training", reference_root, context)
  assert said["checkpoint"] == f"ckpt-{ITERATIONS}", f"{context}: {said}"
  assert not re.search(r"checkpoint", said["what"]), f"{context}: {said}"
  check_resumed(out, reference_root, context)
