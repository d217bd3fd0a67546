"""The run directory, the contract between training and everything after it: its files and readers
(:mod:`~ddl.rundir.layout`) and the checksummed, resumable checkpoints (:mod:`~ddl.rundir.checkpoint`)."""
