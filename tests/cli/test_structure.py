"""The CLI is the top layer: nothing in calibmon imports it (not even inside a function),
and it imports its command groups by name, so a broken one fails loudly."""

from __future__ import annotations

import subprocess
import sys

import grimp
import pytest

COMMAND_MODULES = ("alerts", "butler", "calibs", "common", "report", "run", "serve", "store",
                   "transfer")  # fmt: skip


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("calibmon", include_external_packages=False)


def test_nothing_below_the_cli_imports_it(graph: grimp.ImportGraph) -> None:
    cli_modules = {"calibmon.cli", *graph.find_descendants("calibmon.cli")}
    importers = {
        (importer, imported)
        for imported in cli_modules
        for importer in graph.find_modules_that_directly_import(imported)
        if importer not in cli_modules
    }
    assert importers == set()


def test_the_post_run_steps_and_atomic_writes_live_below_the_cli(
    graph: grimp.ImportGraph,
) -> None:
    """The daemon (cli.serve) and the one-shot commands share the service's post-run step;
    report and dashboards write through io.atomic."""
    assert graph.direct_import_exists(importer="calibmon.cli.serve",
                                      imported="calibmon.service.postrun")  # fmt: skip
    assert graph.direct_import_exists(importer="calibmon.cli.run",
                                      imported="calibmon.service.postrun")  # fmt: skip
    for mod in ("calibmon.report.html", "calibmon.dashboards.build"):
        assert graph.direct_import_exists(importer=mod, imported="calibmon.io.atomic"), mod


@pytest.mark.parametrize("module", ["alerts", "calibs", "report", "serve", "store", "transfer"])
def test_a_broken_command_module_fails_loudly(module: str) -> None:
    """The old string registry swallowed ModuleNotFoundError and the command vanished; now
    ``calibmon`` itself fails to start, naming the module."""
    code = (
        f"import sys; sys.modules['calibmon.cli.{module}'] = None\n"
        "from calibmon.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1
    assert f"calibmon.cli.{module}" in p.stderr and "ModuleNotFoundError" in p.stderr


def test_every_command_is_registered() -> None:
    from calibmon.cli import build_parser

    parser = build_parser()
    (subs,) = [a for a in parser._actions if a.dest == "command"]
    assert list(subs.choices) == [
        "demo", "simulate", "run", "export", "push", "alerts", "calibs", "serve", "dayobs",
        "report", "dashboards", "import", "store",
    ]  # fmt: skip
