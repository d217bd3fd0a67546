"""``python -m ddl ...`` is the ``ddl`` command (what torchrun and worker processes launch)."""

from ddl.commands.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
