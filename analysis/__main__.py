"""``python -m analysis RUN_DIR [...]``: the same as ``ddl analyze`` (one CLI, one error path)."""

from __future__ import annotations

import sys

from ddl.cli import main

if __name__ == "__main__":
    sys.exit(main(["analyze", *sys.argv[1:]]))
