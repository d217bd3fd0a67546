"""Cross-run reports: ``ddl compare`` (runs grouped by experiment, seeds aggregated) — HTML, Markdown, PNG."""

from ddl.report.render import Report, build_report

__all__ = ["Report", "build_report"]
