"""What a sweep analyses in each run: the ``ddl analyze`` options, typed, and the call of
:func:`ddl.commands.analyze.analyze_run` that does it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from analysis.decompose import DecomposeOptions
from ddl.commands.analyze import TARGET_DEFAULTS, analyze_run, cli_option, decompose_options
from ddl.errors import ConfigError


def option_defaults() -> dict[str, Any]:
    """Every ``ddl analyze`` option a sweep accepts, by name, with its default (the decomposition's from
    :class:`DecomposeOptions`)."""
    defaults = DecomposeOptions()
    return {**TARGET_DEFAULTS, **{f.name: getattr(defaults, f.name) for f in dataclasses.fields(DecomposeOptions)
                                  if cli_option(f)}}


@dataclasses.dataclass(frozen=True)
class AnalysisRequest:
    """The analysis of every run of a sweep: the layer, the test sample count and the decomposition options.

    ``recorded``: the options by name as given (completed with the defaults), written to ``sweep.json`` and to
    each run's ``analysis/options.json``; a run is analysed again when its recorded options differ.
    """

    layer: str | None
    test_samples: int | None
    options: DecomposeOptions
    recorded: dict[str, Any]

    @classmethod
    def resolve(cls, given: dict[str, Any]) -> AnalysisRequest:
        """The request of ``given`` options (names as ``ddl analyze``'s, ``_`` for ``-``), completed with the
        defaults; an unknown name is a :class:`ConfigError`, a bad value the decomposition's
        :class:`~analysis.errors.AnalysisError`."""
        defaults = option_defaults()
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ConfigError(f"analysis: unknown `ddl analyze` options {', '.join(unknown)} "
                              f"(allowed: {', '.join(sorted(defaults))})")  # fmt: skip
        recorded = json.loads(json.dumps({**defaults, **given}))
        options = decompose_options({k: v for k, v in recorded.items() if k not in TARGET_DEFAULTS})
        options.checked()  # bad values fail now, before any run
        return cls(recorded["layer"], recorded["test_samples"], options, recorded)

    def run(self, run_dir: Path) -> None:
        """Analyse the run in ``run_dir`` (into ``run_dir/analysis``; the summary goes to stdout: the run's log)."""
        analyze_run(run_dir, layer=self.layer, test_samples=self.test_samples, out=None, progress=False,
                    verbose=True, options=self.options)

    def done_in(self, run_dir: Path) -> bool:
        """Whether ``run_dir`` holds an analysis made with these options."""
        try:
            done = json.loads((run_dir / "analysis" / "options.json").read_text())
        except (OSError, ValueError):
            return False
        return json.dumps(done, sort_keys=True) == json.dumps(self.recorded, sort_keys=True) \
            and (run_dir / "analysis" / "duality.json").is_file()
