"""ddl: a distributed-training simulator for SSGD vs DPSGD, with an activity-weight duality analysis stage."""

__version__ = "0.1.0"
