"""The console filter drops the third-party start-up noise and nothing else."""

import subprocess
import sys
import textwrap

from l2f_tf import console

SCRIPT = textwrap.dedent("""
    import sys
    import l2f_tf
    from l2f_tf import console
    console.quiet_third_party()
    import tensorflow as tf
    import tf_agents  # pulls in gym and its banner
    from absl import logging
    logging.set_verbosity(logging.INFO)
    logging.info("own info line")
    tf.get_logger().info("tensorflow info line")
    logging.warning("a real warning")
    print("a plain stderr line", file=sys.stderr)
    raise SystemExit("the last message")
""")
# The gym banner alone (no TensorFlow: a second of start-up, not five): what the flag brings back.
GYM_SCRIPT = textwrap.dedent("""
    import l2f_tf
    from l2f_tf import console
    console.quiet_third_party()
    import gym
    raise SystemExit("the last message")
""")


def run(*args, env=None, script=SCRIPT):
  return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                        timeout=300, env=env).stderr


def test_noise_is_dropped_and_everything_else_kept():
  quiet = run()
  for noise in ("Could not find cuda drivers", "failed call to cuInit", "Gym has been unmaintained",
                "absl::InitializeLog", "tensorflow info line"):
    assert noise not in quiet, quiet
  for kept in ("own info line", "a real warning", "a plain stderr line", "the last message"):
    assert kept in quiet, quiet


def test_the_flag_brings_the_noise_back():
  loud = run("--third_party_logs", script=GYM_SCRIPT)
  assert "Gym has been unmaintained" in loud
  assert "the last message" in loud


def test_is_noise_matches_only_the_listed_lines():
  assert console.is_noise("E0000 00:00:1795829839.141590 9504 cuda_platform.cc:52] failed call "
                          "to cuInit: INTERNAL: CUDA error")
  assert not console.is_noise("E1128 trainer.py:12] Bad gin binding type")
  assert console.is_noise("To enable the following instructions: AVX2 AVX512F FMA, in other "
                          "operations, rebuild TensorFlow with the appropriate compiler flags.\n")
  assert not console.is_noise("To enable the following instructions, see our docs")
  assert not console.wanted(["run_experiment.py", "--third_party_logs"])
  assert console.wanted(["run_experiment.py", "--third_party_logs=false"])
  assert console.wanted(["run_experiment.py"])
