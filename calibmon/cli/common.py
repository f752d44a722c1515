"""What every ``calibmon`` command shares: exit codes, the parser class and the options
accepted anywhere on the line, argument types, opening settings and the store, logging
set-up, the progress display and the check for optional extras.

Exit codes (DESIGN.md §3): 0 all inputs processed, 1 some inputs rejected (the rest
processed), 2 usage or configuration error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from calibmon.errors import ConfigError

if TYPE_CHECKING:
    from calibmon.config import Settings
    from calibmon.store.sqlite import Store

# Settings, the store and logging are imported when a command runs, not when the parser is
# built: `calibmon --help` stays fast.

EXIT_OK, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("calibmon")


class Parser(argparse.ArgumentParser):
    """argparse with exit code 2 and a one-line error (DESIGN.md §3)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"calibmon: error: {message}\n")


# --------------------------------------------------------------------------------------
# Argument types
# --------------------------------------------------------------------------------------
def day_obs_arg(text: str) -> str:
    """``YYYYMMDD`` or ``YYYY-MM-DD`` (a calendar date) → ``YYYYMMDD``."""
    from calibmon.dayobs import format_day_obs, parse_day_obs

    try:
        return format_day_obs(parse_day_obs(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def detectors_arg(text: str) -> list[str]:
    """``R22_S11,R01_S01`` → a list of detector names (each checked)."""
    from calibmon.io.detectors import is_valid_name

    names = [t.strip() for t in text.split(",") if t.strip()]
    for n in names:
        if not is_valid_name(n):
            raise argparse.ArgumentTypeError(f"{n!r} is not a detector name like R22_S11")
    return names


# --------------------------------------------------------------------------------------
# Settings, store, logging
# --------------------------------------------------------------------------------------
def settings_from_args(args: argparse.Namespace, **flags: Any) -> Settings:
    """Settings from ``--config`` (or ``CALIBMON_CONFIG``) < environment < ``--store`` and
    ``flags`` (None values ignored)."""
    from calibmon.config import load_settings

    return load_settings(getattr(args, "config", None), store=getattr(args, "store", None),
                         **flags)  # fmt: skip


def open_store(settings: Settings) -> Store:
    """The SQLite store the settings name (a context manager)."""
    from calibmon.store.sqlite import Store

    return Store(settings.store_path())


def setup_logging(args: argparse.Namespace, settings: Settings | None = None) -> None:
    """Logging once per command: ``--debug`` > ``-q`` > the config's level; secrets of the
    configuration are redacted from every line."""
    from calibmon.logs import configure_logging

    level = "DEBUG" if getattr(args, "debug", False) else (
        "WARNING" if getattr(args, "quiet", False) else (settings.log_level if settings else "INFO")
    )  # fmt: skip
    fmt = settings.log_format if settings else "text"
    configure_logging(level, fmt, secrets=settings.secret_values() if settings else [])


def load(args: argparse.Namespace, **flags: Any) -> Settings:
    """:func:`settings_from_args` then :func:`setup_logging`: the start of most commands."""
    settings = settings_from_args(args, **flags)
    setup_logging(args, settings)
    return settings


def require_extra(module: str, what: str, package: str, extra: str) -> None:
    """Raise one :class:`ConfigError` line (exit 2) when ``module`` is not importable:
    ``<what> needs <package>: pip install 'calibmon[<extra>]'``."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or set to None
        found = False
    if found and sys.modules.get(module, ...) is None:  # blocked (sys.modules[m] = None)
        found = False
    if not found:
        raise ConfigError(f"{what} needs {package}: pip install 'calibmon[{extra}]'")


def require_cluster_extra(settings: Any) -> None:
    """``executor: dask`` with ``dask.cluster: slurm`` needs dask-jobqueue (calibmon[slurm]):
    checked before any work, so a missing extra is one line, not a traceback mid-run."""
    cluster = getattr(getattr(settings, "dask", None), "cluster", None)
    if getattr(settings, "executor", None) == "dask" and str(cluster).lower() == "slurm":
        require_extra("dask_jobqueue", "executor dask with dask.cluster slurm", "dask-jobqueue",
                      "slurm")  # fmt: skip


class Progress:
    """A progress bar on a terminal; quiet log lines (every 10 %) otherwise."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()
        self._last = -1

    def __call__(self, done: int, total: int) -> None:
        """``done`` of ``total`` amplifiers measured."""
        frac = done / total if total else 1.0
        if self.tty:
            n = int(frac * 30)
            sys.stderr.write(f"\r{self.label} [{'#' * n}{'.' * (30 - n)}] {done}/{total} amps")
            if done == total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            step = int(frac * 10)
            if step != self._last:
                self._last = step
                log.info("%s: %d/%d amps (%d %%)", self.label, done, total, int(frac * 100))


# --------------------------------------------------------------------------------------
# Parser helpers
# --------------------------------------------------------------------------------------
def add_common(p: argparse.ArgumentParser, store: bool = True) -> None:
    """``--store``, ``--config``, ``--debug`` and ``-q`` on one (sub-)parser.

    Their defaults are ``argparse.SUPPRESS``: argparse parses a sub-command into a fresh
    namespace and copies it over its parent's, so a default there would erase the value
    given earlier on the line (``calibmon alerts --store S evaluate``); an option not
    given is simply absent (read it with ``getattr(args, name, None)``). Options already
    on the parser are left alone, so this may run twice (``build_parser`` runs it on
    every parser once all are registered)."""
    options: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (("--config",), {"help": "calibmon.yaml (default: $CALIBMON_CONFIG)"}),
        (("--debug",), {"action": "store_true", "help": "debug logging with tracebacks"}),
        (("-q", "--quiet"), {"action": "store_true", "help": "warnings and errors only"}),
    ]
    if store:
        options.insert(
            0, (("--store",), {"help": "SQLite store (default: $CALIBMON_STORE or user data dir)"})
        )
    for flags, kwargs in options:
        if not any(f in p._option_string_actions for f in flags):
            p.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)


def add_common_everywhere(parser: argparse.ArgumentParser) -> None:
    """:func:`add_common` on ``parser`` and every sub-command parser below it, so that
    ``--store``/``--config`` may stand before a command, between a command and its
    action, or after it, for every command."""
    add_common(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share a parser
                add_common_everywhere(sub)


def add_command(
    subs: Any, name: str, help_: str, example: str, func: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """A sub-command parser whose ``--help`` says what it does, with an example."""
    p = subs.add_parser(
        name,
        help=help_,
        description=help_,
        epilog="example:\n  " + example,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=func)
    return p
