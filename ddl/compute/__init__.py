"""Per-learner compute: the ``[m, P]`` weight matrix (:mod:`~ddl.compute.flat`), the learners' minibatch streams
(:mod:`~ddl.compute.stream`) and their gradients (:mod:`~ddl.compute.learners`, with the batched fast paths
:mod:`~ddl.compute.fastmlp` and :mod:`~ddl.compute.fastcnn`)."""
