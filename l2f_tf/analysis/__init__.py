"""The paper's analysis figures from finished runs (``python -m l2f_tf.analyze``).

- ``summaries``: a run's TensorBoard scalars read back (conflict, gamma, landscape over
  meta-iterations).
- ``measures``: measures on a restored learner and fixed test tasks (gamma per task, per-task
  conflict, the landscape, the manual attenuation sweep).
- ``figures``: the plots.
The measures themselves (degree of conflict, landscape) are in ``l2f_tf.meta.diagnostics``.
"""
