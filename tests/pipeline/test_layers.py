"""Layering: science imports nothing of calibmon outside science; the pipeline never
imports service, cli, alerts or report; calibs never imports service or cli (their
commands aside). Every import statement counts, also one inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import calibmon

ROOT = Path(calibmon.__file__).parent


def _imports(path: Path) -> set[str]:
    """Every calibmon module ``path`` imports (absolute names)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("calibmon"))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").startswith("calibmon")
        ):
            out.add(str(node.module))
    return out


def _modules(package: str, exclude: tuple[str, ...] = ()) -> list[Path]:
    return [p for p in sorted((ROOT / package).rglob("*.py")) if p.name not in exclude]


@pytest.mark.parametrize(
    ("package", "allowed", "exclude"),
    [
        ("science", ("calibmon.science",), ()),
        (
            "pipeline",
            ("calibmon.pipeline", "calibmon.science", "calibmon.io", "calibmon.records",
             "calibmon.catalogue", "calibmon.calibs.products", "calibmon.errors",
             "calibmon.config"),
            (),
        ),
        (
            "calibs",
            ("calibmon.calibs", "calibmon.pipeline", "calibmon.science", "calibmon.io",
             "calibmon.records", "calibmon.errors", "calibmon.store", "calibmon.config"),
            ("cli.py",),
        ),
    ],
)  # fmt: skip
def test_no_back_edges(package: str, allowed: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    bad = []
    paths = _modules(package, exclude)
    assert len(paths) > 2, f"calibmon/{package}/ is a package of modules"
    for path in paths:
        for name in _imports(path):
            # the package itself (``from calibmon import __version__``) is no layer
            ok = name == "calibmon" or any(name == a or name.startswith(a + ".") for a in allowed)
            if not ok:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert bad == []
