"""Kill-and-resume fuzzing: SIGKILL tiny runs of run_experiment.py at random moments, re-run
the same command after each kill, and check that every run ends exactly as an uninterrupted
one (weights, results, best/, SavedModel predictions, figure, no temporary file left).

  python benchmarks/kill_resume.py --kills=20 --domains=sinusoid,glyphs,navigation --seed=0

For each domain it prints one line per kill (when, in which stage, what the kill left), then a
table: domain | kills | successful resumes | equal final weights | equal results | other
checks | stages hit; then the temporary files the kills left (which the next run cleared) and
every problem found. Exits 1 if any check failed. The logic is in tests/kill_resume.py (the
test tests/test_kill_resume.py runs it with 3 kills); docs/robustness.md has the measured table.
"""

from l2f_tf import console  # l2f_tf first: it sets TF_USE_LEGACY_KERAS before TensorFlow.

console.quiet_third_party()  # Before TensorFlow is imported (for the comparisons).

import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from absl import app, flags  # noqa: E402

# The fuzzing logic lives with the tests (tests/kill_resume.py), at the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests import kill_resume  # noqa: E402

KILLS = flags.DEFINE_integer("kills", 20, "SIGKILLs per domain.")
DOMAINS = flags.DEFINE_list("domains", list(kill_resume.DOMAINS), "Domains to fuzz.")
SEED = flags.DEFINE_integer("seed", 0, "Seeds every random draw (kill moments).")
WORK_DIR = flags.DEFINE_string("work_dir", None, "An empty or new folder for the runs (default: "
                               "a new temporary folder, deleted at the end unless --keep).")
KEEP = flags.DEFINE_bool("keep", False, "Keep the runs and their logs.")
PARALLEL = flags.DEFINE_integer("parallel", 1, "Domains fuzzed at the same time (1: one after "
                                "the other, the cleanest timings).")


def main(argv):
  del argv
  work_dir = WORK_DIR.value or tempfile.mkdtemp(prefix="kill_resume_")
  started = time.time()
  reports = kill_resume.run(work_dir, DOMAINS.value, KILLS.value, SEED.value, PARALLEL.value,
                            say=lambda text: print(text, flush=True))
  print()
  print(kill_resume.table(reports))
  print(f"\nTotal time: {time.time() - started:.0f} s (--kills={KILLS.value}, "
        f"--domains={','.join(DOMAINS.value)}, --seed={SEED.value}, "
        f"--parallel={PARALLEL.value}).")
  for report in reports:
    print(f"{report.experiment.name}: reference run {report.reference.seconds:.1f} s, "
          f"fuzzing {report.seconds:.0f} s, {len(report.attempts)} attempts.")
  left = kill_resume.leftovers_seen(reports)
  if left:
    print("Temporary files left by kills (then cleared or overwritten by the next run): " +
          ", ".join(f"{name} ({count})" for name, count in sorted(left.items())))
  problems = [f"[{r.experiment.name}] {p}" for r in reports for p in r.problems]
  print("\n".join(["Problems:"] + problems) if problems else "No problem found.")
  if WORK_DIR.value or KEEP.value:
    print(f"Runs and logs: {work_dir}")
  else:
    kill_resume.remove(work_dir)
  sys.exit(1 if problems else 0)


if __name__ == "__main__":
  app.run(main)
