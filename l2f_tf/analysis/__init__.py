"""The paper's analysis figures from finished runs (``python -m l2f_tf.analyze``): ``summaries``
(a run's TensorBoard scalars read back), ``measures`` (on a restored learner and fixed tasks)
and ``figures``; the measures themselves are in ``l2f_tf.meta.diagnostics``.
"""
