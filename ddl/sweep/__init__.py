"""``ddl sweep``: a grid of training runs (product of grid values × seeds) run in parallel, each analysed.

Layout of a sweep directory::

    DIR/
      sweep.json      the spec (base flags, grid, seeds, analysis options) and the planned runs
      results.csv     one row per planned run (see RESULT_COLUMNS), rewritten after every finished run
      <NAME>/         one run directory per (grid values, seed), NAME = "key=value,…,seed=S"
                      (+ sweep.log: the run's output; error.txt / analysis-error.txt when it failed)
      report/         the sweep report (ddl.report.sweep)

``ddl compare DIR`` reads the runs of a sweep directory like any directory of runs.

Idempotent and resumable: a run is done when its ``summary.json`` exists with the planned configuration (and,
with analysis, its ``analysis/options.json`` holds the planned analysis options); done runs are skipped, every
other run is (re)done, so the same command given again after a kill continues where the sweep stopped.  A run
that was killed mid-way continues from its last checkpoint (``ddl train --resume``; ``--checkpoint-every``
sets how often one is written), or is trained again from its start when it has none.  A finished run whose
configuration differs from the plan (the base flags changed but the grid values did not) is an error, not
silently replaced.

Executors: ``local`` — K worker processes on this machine (spawned, each with ``cores // K`` torch threads, killed
with the sweep); ``ray`` — one Ray task per run on a local cluster or an existing one (``--address``), with
``--cpus-per-run`` / ``--gpus-per-run`` resources.  A run that raises or diverges is recorded and the others go on.

The package, by job: :mod:`~ddl.sweep.grid` (grid values typed as the config fields they set),
:mod:`~ddl.sweep.plan` (the spec, the planned runs and their state on disk), :mod:`~ddl.sweep.analysis` (the
typed ``ddl analyze`` options of every run), :mod:`~ddl.sweep.execute` (one run in a worker; local processes and
Ray tasks), :mod:`~ddl.sweep.results` (``results.csv``), :mod:`~ddl.sweep.run` (:func:`~ddl.sweep.run.run_sweep`)
and :mod:`~ddl.sweep.command` (``ddl sweep``).
"""
