"""Cross-run reports (``ddl compare``): runs read back from their directories, grouped by experiment, aggregated
over seeds and written as HTML, Markdown, PNG and ``numbers.json``.

Modules, in the order data flows through them:

* :mod:`ddl.report.runs` - reading: :func:`~ddl.report.runs.read_runs` (run directories, or directories of runs
  such as a sweep's output) gives :class:`~ddl.report.runs.RunData` (config, summary, metrics, noise, the
  :class:`analysis.result.DualityResult`) and records what is missing.
* :mod:`ddl.report.stats` - numbers: the scalars of one run (:func:`~ddl.report.stats.run_numbers`), statistics
  over seeds (:func:`~ddl.report.stats.group_stats`) and curves/spectra as mean ± std bands.
* :mod:`ddl.report.groups` - grouping: :func:`~ddl.report.groups.make_groups` makes one
  :class:`~ddl.report.groups.Group` per experiment (:func:`ddl.config.experiment_key`), labelled and coloured.
* :mod:`ddl.report.verdict` - the findings in plain language, one named check each.
* :mod:`ddl.report.figures` - the cross-run figures (functions of the groups) with their text; they share the
  plotting helpers and axis labels of the per-run figures in :mod:`analysis.figures`.
* :mod:`ddl.report.formatting` - numbers as text (percentages, ``mean ± std``).
* :mod:`ddl.report.render` - report-agnostic rendering: blocks (headings, prose, tables, images, boxes) to one
  self-contained HTML page and a Markdown twin; :func:`~ddl.report.render.write_report` writes all files.
* :mod:`ddl.report.comparison` - the comparison report (the baseline against the other algorithms) assembled from
  the above
  (:func:`~ddl.report.comparison.build_report`).
* :mod:`ddl.report.compare` - the ``ddl compare`` command line (imports only argparse at module level).
* :mod:`ddl.report.checks` - the exactness checks and the sharp/flat split rule of the analysed runs, as lines.
* The sweep report (``ddl sweep``): :mod:`ddl.report.sweep_data` (grid points, regime maps),
  :mod:`ddl.report.sweep_figures`, :mod:`ddl.report.sweep_findings` (findings text, the table) and
  :mod:`ddl.report.sweep` (assembly: :func:`~ddl.report.sweep.build_sweep_report`).
* :mod:`ddl.report.clock` - the simulated clock's figures (``ddl clock``'s speed-up maps; loss and test error
  against simulated wall clock in a comparison).

Labels, which algorithm is the baseline and which noise is an algorithm's own come from the algorithms'
declarations (:mod:`ddl.algorithms.communication`), never from their names.

"Size" is :attr:`analysis.result.DualityResult.size`, ``Σ_k σ_w,k``, everywhere.
"""

from ddl.report.comparison import Report, build_report

__all__ = ["Report", "build_report"]
