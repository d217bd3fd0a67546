"""Measurements beside the loop that never change a trajectory: the noise and sharpness meter
(:mod:`~ddl.measure.noise`) and the simulated wall clock (:mod:`~ddl.measure.clock`)."""
