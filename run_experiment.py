"""``python run_experiment.py --gin_file=...`` in a source checkout: the command line of
``python -m l2f_tf`` (`l2f_tf/__main__.py`, which documents it)."""

import runpy

runpy.run_module("l2f_tf", run_name="__main__", alter_sys=True)
