"""``python -m analysis RUN_DIR [...]``: the same as ``ddl analyze``."""

from __future__ import annotations

import argparse
import sys

from analysis.cli import add_analyze_arguments, run_analyze


def main(argv: list[str] | None = None) -> int:
    parser = add_analyze_arguments(argparse.ArgumentParser(
        prog="python -m analysis", description="activity-weight duality decomposition of a run's averaged model"
    ))  # fmt: skip
    args = parser.parse_args(argv)
    try:
        return run_analyze(args)
    except (ValueError, FileNotFoundError) as e:
        parser.exit(2, f"{parser.prog}: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
