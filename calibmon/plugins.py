"""Build one object per config entry from a table of type name → class (the sink and
notifier registries use it)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def build_by_type(types: Mapping[str, Callable[[Any], T]], cfg: Any, what: str) -> T:
    """``types[cfg.type](cfg)``; ValueError naming ``what`` for an unknown type."""
    cls = types.get(cfg.type)
    if cls is None:
        raise ValueError(f"unknown {what} type {cfg.type!r}")
    return cls(cfg)
