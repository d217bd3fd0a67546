"""The training loop (one per worker): :mod:`ddl.loop.train` runs steps, evaluation, measurements and
checkpoints; :mod:`ddl.loop.progress` draws its progress."""
