"""``--store`` and ``--config`` wherever they stand on the line, for every command.

Each command runs in-process with ``CALIBMON_STORE`` pointing at a sentinel path (unset
for the config tests) and ``HOME``/``XDG_DATA_HOME`` at an empty directory: the store named on the line (or by the
config file's ``store:`` key) must be the one created, and the default store never.
Placements: before the command (``calibmon --store S alerts evaluate``), between a command
and its action (``calibmon alerts --store S evaluate``) and after (``calibmon alerts
evaluate --store S``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from calibmon.cli import build_parser, main

# id: (command, action, the rest of the line); {empty} an empty directory, {file} a file
# that is not FITS, {out} a file to write. Every one of these opens the store.
STORE_COMMANDS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "alerts": (["alerts"], [], []),
    "alerts-evaluate": (["alerts"], ["evaluate"], ["--day-obs", "20251121"]),
    "alerts-silence": (
        ["alerts"],
        ["silence"],
        ["--detector", "R22_S11", "--until", "2025-12-01", "--reason", "REB swap"],
    ),
    "alerts-silences": (["alerts"], ["silences"], []),
    "alerts-unsilence": (["alerts"], ["unsilence"], ["1"]),
    "alerts-deliver": (["alerts"], ["deliver"], []),
    "calibs-build": (
        ["calibs"],
        ["build"],
        ["--calib-type", "bias", "--input", "{empty}", "--day-obs", "20251121"],
    ),
    "calibs-certify": (["calibs"], ["certify"], ["0123456789ab", "--begin", "2025-11-01"]),
    "calibs-list": (["calibs"], ["list"], []),
    "calibs-validity": (["calibs"], ["validity"], ["0123456789ab"]),
    "calibs-import": (["calibs"], ["import"], ["{file}"]),
    "calibs-used": (["calibs"], ["used"], ["{file}"]),
    "import": (["import"], [], ["{file}"]),
    "store-maintain": (["store"], ["maintain"], []),
    "store-check": (["store"], ["check"], []),
    "run": (["run"], [], ["--input", "{empty}"]),
    "export": (["export"], [], []),
    "push": (["push"], [], []),
    "report": (["report"], [], ["-o", "{out}"]),
    "serve": (
        ["serve"],
        [],
        ["--once", "--input", "{empty}", "--metrics-port", "-1", "--test-now", "2025-11-22T13:00Z"],
    ),
}
# Commands that never open a store (they must still accept the options anywhere).
OTHER_COMMANDS: dict[str, tuple[list[str], list[str], list[str]]] = {
    "alerts-test-notify": (["alerts"], ["test-notify"], []),
    "dashboards-build": (["dashboards"], ["build"], ["-o", "{empty}"]),
    "simulate": (["simulate"], [], ["--out", "{empty}", "--day-obs", "20251121"]),
    "dayobs": (["dayobs"], [], []),
    "demo": (["demo"], [], ["--workdir", "{out}"]),
}
PLACEMENTS = ("before", "between", "after")


def _cases(commands: dict) -> list:
    return [
        pytest.param(name, where, id=f"{name}-{where}")
        for name, (_, action, _) in commands.items()
        for where in PLACEMENTS
        if where != "between" or action
    ]


def _line(spec: tuple, option: list[str], where: str, paths: dict[str, str]) -> list[str]:
    command, action, rest = spec
    rest = [a.format(**paths) for a in rest]
    if where == "before":
        return [*option, *command, *action, *rest]
    if where == "between":
        return [*command, *option, *action, *rest]
    return [*command, *action, *rest, *option]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A sentinel default store and an empty home; paths for the command lines."""
    home = tmp_path / "home"
    home.mkdir()
    sentinel = tmp_path / "default" / "SENTINEL.sqlite"
    monkeypatch.setenv("CALIBMON_STORE", str(sentinel))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    empty = tmp_path / "empty"
    empty.mkdir()
    not_fits = tmp_path / "bias_R22_S11.fits"
    not_fits.write_bytes(b"not a FITS file\n")
    return {
        "sentinel": sentinel,
        "home": home,
        "empty": empty,
        "file": not_fits,
        "out": tmp_path / "out" / "report.html",
    }


def _paths(env: dict[str, Path]) -> dict[str, str]:
    return {k: str(v) for k, v in env.items()}


def _assert_default_untouched(env: dict[str, Path]) -> None:
    assert not env["sentinel"].exists(), "the default store was created"
    assert not any(env["home"].rglob("*.sqlite")), "a store was created under HOME"


@pytest.mark.parametrize(("name", "where"), _cases(STORE_COMMANDS))
def test_store_option_anywhere(name: str, where: str, env, tmp_path: Path, capsys) -> None:
    store = tmp_path / "given.sqlite"
    argv = _line(STORE_COMMANDS[name], ["--store", str(store)], where, _paths(env))
    rc = main([*argv, "-q"])
    assert isinstance(rc, int)
    assert store.exists(), f"{argv}: the store given on the line was not used (rc {rc})"
    _assert_default_untouched(env)
    if name == "report":  # the store is empty: the message names the store it read
        assert rc == 2 and f"the store {store} holds no records" in capsys.readouterr().err


@pytest.mark.parametrize(("name", "where"), _cases(STORE_COMMANDS))
def test_config_option_anywhere(name: str, where: str, env, tmp_path: Path, monkeypatch) -> None:
    """The config file's ``store:`` is used. ``CALIBMON_STORE`` would override the file
    (file < environment < flags), so here the default store is the one under the empty
    ``XDG_DATA_HOME``."""
    monkeypatch.delenv("CALIBMON_STORE")
    store = tmp_path / "from-config.sqlite"
    cfg = tmp_path / "calibmon.yaml"
    cfg.write_text(f"store: {store}\nexecutor: serial\n")
    argv = _line(STORE_COMMANDS[name], ["--config", str(cfg)], where, _paths(env))
    rc = main([*argv, "-q"])
    assert store.exists(), f"{argv}: the config's store was not used (rc {rc})"
    _assert_default_untouched(env)


@pytest.mark.parametrize(("name", "where"), _cases({**STORE_COMMANDS, **OTHER_COMMANDS}))
def test_every_option_parses_anywhere(name: str, where: str, env) -> None:
    """Both options (and ``--debug``) given at the same place reach the command."""
    spec = {**STORE_COMMANDS, **OTHER_COMMANDS}[name]
    opts = ["--store", "S.sqlite", "--config", "c.yaml", "--debug"]
    args = build_parser().parse_args(_line(spec, opts, where, _paths(env)))
    assert (args.store, args.config, args.debug) == ("S.sqlite", "c.yaml", True)
    assert callable(args.func)


@pytest.mark.parametrize(
    ("name", "where"),
    [c for c in _cases(OTHER_COMMANDS) if c.values[0] not in ("simulate", "dayobs")],
)
def test_config_of_storeless_commands_is_read(name: str, where: str, env, capsys) -> None:
    """A config file with an unknown key fails (exit 2, naming the file) wherever
    ``--config`` stands: the file given was read. No store is created."""
    cfg = env["empty"].parent / "bad.yaml"
    cfg.write_text("no_such_key: 1\n")
    argv = _line(OTHER_COMMANDS[name], ["--config", str(cfg)], where, _paths(env))
    assert main(argv) == 2
    assert f"config error in {cfg}: no_such_key: unknown key" in capsys.readouterr().err
    _assert_default_untouched(env)


@pytest.mark.parametrize("name", ["simulate", "dayobs", "dashboards-build", "alerts-test-notify"])
def test_storeless_commands_accept_a_store_and_create_none(name: str, env, tmp_path) -> None:
    store = tmp_path / "given.sqlite"
    argv = _line(OTHER_COMMANDS[name], ["--store", str(store)], "before", _paths(env))
    if name == "simulate":
        argv += ["--n-bias", "1", "--n-dark", "1", "--n-flat", "2", "--small"]
    rc = main(argv)
    assert rc == (2 if name == "alerts-test-notify" else 0)  # no notifiers configured
    assert not store.exists()
    _assert_default_untouched(env)


def test_demo_uses_the_store_given_before_the_command(env, tmp_path) -> None:
    """The demo's own default is a store in its work directory; ``--store`` before the
    command replaces it (the placement after the command is the usual one)."""
    store = tmp_path / "given.sqlite"
    work = tmp_path / "work"
    assert main(["--store", str(store), "demo", "--workdir", str(work), "-q"]) == 0
    assert store.exists() and not (work / "calibmon.sqlite").exists()
    _assert_default_untouched(env)


def test_the_later_of_two_stores_wins() -> None:
    """Given twice, the occurrence nearest the action is used (as for any repeated flag)."""
    args = build_parser().parse_args(
        [
            "--store",
            "a.sqlite",
            "alerts",
            "--store",
            "b.sqlite",
            "evaluate",
            "--day-obs",
            "20251121",
        ]
    )
    assert args.store == "b.sqlite"
    args = build_parser().parse_args(
        [
            "alerts",
            "--store",
            "b.sqlite",
            "evaluate",
            "--day-obs",
            "20251121",
            "--store",
            "c.sqlite",
        ]
    )
    assert args.store == "c.sqlite"


@pytest.mark.parametrize("where", ["between", "after"])
@pytest.mark.parametrize(
    "action",
    [
        ["evaluate", "--day-obs", "20251121"],
        ["silence", "--detector", "RXX_S00", "--until", "2025-12-01", "--reason", "test"],
    ],
)
def test_alerts_instrument_before_or_after_the_action(where: str, action: list[str]) -> None:
    """``alerts --instrument X ACTION`` and ``alerts ACTION --instrument X`` are the same
    (the action's own ``--instrument`` no longer resets the one given before it)."""
    opt = ["--instrument", "LATISS"]
    argv = ["alerts", *opt, *action] if where == "between" else ["alerts", *action, *opt]
    assert build_parser().parse_args(argv).instrument == "LATISS"
    assert build_parser().parse_args(["alerts", *action]).instrument is None
