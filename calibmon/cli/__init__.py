"""The ``calibmon`` command line (DESIGN.md §3), one module per command group.

- :mod:`.main` — the parser and :func:`main` (exit codes).
- :mod:`.common` — exit codes, argument types, settings/store opening, logging set-up.
- :mod:`.run` (demo, simulate, run, push), :mod:`.transfer` (export, import),
  :mod:`.alerts`, :mod:`.calibs` (+ :mod:`.butler`, its ``--butler`` variants),
  :mod:`.serve` (serve, dayobs), :mod:`.report` (report, dashboards), :mod:`.store`.

Nothing else in calibmon imports this package: it is the top layer
(docs/architecture.md).
"""

from __future__ import annotations

from calibmon.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
