"""Layering, checked by the contracts CI enforces (``[tool.importlinter]`` in
pyproject.toml, run by ``make lint``): running them here too makes a back-edge fail
``pytest`` on its own, with import-linter's explanation in the message. Imports inside
functions count; ``if TYPE_CHECKING:`` imports do not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed (dev extra)")
def test_import_contracts_hold() -> None:
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_back_edge_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts are not vacuous: the same configuration over a copy of the package with
    one science module importing the pipeline reports a broken contract."""
    if not LINT_IMPORTS.exists():
        pytest.skip("import-linter not installed (dev extra)")
    import shutil

    shutil.copytree(REPO / "calibmon", tmp_path / "calibmon", symlinks=True)
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "calibmon" / "science" / "_back_edge.py"
    bad.write_text("def f():\n    from calibmon.pipeline import AmpResult\n    return AmpResult\n")
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode != 0
    assert "calibmon.science._back_edge" in proc.stdout
