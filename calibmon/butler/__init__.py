"""The Butler edge: read raws and certified calibrations from a daf_butler repository.

An optional extra (``pip install 'calibmon[butler]'``, which pulls ``lsst-daf-butler`` from
PyPI; nothing else of the LSST stack is needed). Only this package imports ``lsst.*``;
``pipeline`` and ``science`` never import it. The commands that use it
(``calibmon run --butler``, ``calibmon calibs import/used/list --butler``) call
:func:`require_butler` first, which without the extra raises one
:class:`~calibmon.errors.ConfigError` line naming the extra (exit 2).

Modules: :mod:`.repo` (queries, URIs, local copies), :mod:`.dayobs` (Butler timespans ↔
day_obs ranges), :mod:`.exposuref` (afw ExposureF and ip_isr Defects files, cut into amps),
:mod:`.raws` (``run --butler``), :mod:`.schedule` (a scheduled job reading a Butler),
:mod:`.calibs` (``calibs import/list --butler``), :mod:`.used` (``calibs used``) and
the CLI's ``cli/butler.py`` (their printing and exit codes).
"""

from __future__ import annotations

from types import ModuleType

from calibmon.errors import ConfigError

EXTRA_HINT = "pip install 'calibmon[butler]'"


class ButlerNotInstalled(ConfigError):
    """The ``butler`` extra is not installed."""


def require_butler() -> ModuleType:
    """``lsst.daf.butler``, or :class:`ButlerNotInstalled` with a one-line hint."""
    try:
        import lsst.daf.butler as dafButler
    except ImportError:
        raise ButlerNotInstalled(
            f"the Butler commands need lsst-daf-butler, the optional extra: {EXTRA_HINT}"
        ) from None
    return dafButler
