"""``python run_experiment.py ...`` in a source checkout is ``python -m l2f_tf ...``
(`l2f_tf/__main__.py` documents it)."""

from l2f_tf import console

console.quiet_third_party()  # Before TensorFlow is imported; --third_party_logs: off.

from absl import app  # noqa: E402

from l2f_tf.__main__ import define_flags, main  # noqa: E402

if __name__ == "__main__":
  define_flags()
  app.run(main)
