"""The ``ddl`` commands: the entry point (:mod:`~ddl.commands.cli`), flags generated from dataclasses
(:mod:`~ddl.commands.flags`), ``ddl analyze``, ``ddl demo`` and ``ddl clock``."""
