"""Start-up: each command imports only what it needs (issue 12, item 3).

The real CLI runs in a subprocess; at exit it prints the modules it had imported. Only
the module sets are asserted, never times (see README "Performance" for those).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from harvester.cli import COMMANDS, cli, load_command
from tests.conftest import SAMPLE, write_config

WRAPPER = """
import atexit, json, sys
atexit.register(lambda: print("MODULES=" + json.dumps(sorted(sys.modules)), file=sys.__stderr__))
from harvester.cli import main
sys.argv = ["harvester", *sys.argv[1:]]
main()
"""
NETWORK = {"httpx", "httpcore", "tenacity"}
HEAVY = {"apscheduler", "tomlkit", "datasette", "apprise", "feedgen", "lxml"}


def modules_of(*args: str, cwd: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    line = [x for x in done.stderr.splitlines() if x.startswith("MODULES=")]
    assert line, done.stderr
    return {name.split(".")[0] for name in json.loads(line[-1].removeprefix("MODULES="))}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_config(tmp_path, ["http://127.0.0.1:9/never.ics"], "retries = 0\n")
    subprocess.run(
        [sys.executable, "-c", WRAPPER, "--config", str(path), "import", str(SAMPLE)],
        cwd=tmp_path,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return path


def test_help_imports_no_pipeline(tmp_path: Path) -> None:
    loaded = modules_of("--help", cwd=tmp_path)
    assert not loaded & (NETWORK | HEAVY | {"icalendar", "sqlite_utils", "structlog"})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "allowed"),
    [
        (("import", str(SAMPLE)), {"icalendar"}),
        (("history", "PhysicsMeetsML/1"), set()),
        (("export",), set()),
        (("export", "--format", "ics"), {"icalendar"}),
        (("status",), set()),
    ],
)
def test_archive_commands_import_no_network_nor_scheduler(
    config: Path, args: tuple[str, ...], allowed: set[str]
) -> None:
    loaded = modules_of("--config", str(config), *args, cwd=config.parent)
    assert "sqlite_utils" in loaded  # it did run
    assert not loaded & (NETWORK | HEAVY)
    assert not (loaded & {"icalendar"}) - allowed


@pytest.mark.slow
def test_sync_imports_no_scheduler_nor_config_editor(config: Path) -> None:
    loaded = modules_of("--config", str(config), "sync", cwd=config.parent)
    assert "httpx" in loaded
    assert not loaded & {"apscheduler", "tomlkit", "datasette"}
    # start-up costs only a run that needs them pays
    assert not loaded & {"filelock", "multiprocessing"}
    assert "filelock" in modules_of("--config", str(config), "sync", "--lock", cwd=config.parent)


def test_lazy_command_list_matches_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """`harvester --help` lists the static one-liners; loaded, the commands say the same."""
    monkeypatch.setattr(cli, "commands", {})

    def help_text() -> str:
        return CliRunner().invoke(cli, ["--help"], prog_name="harvester", terminal_width=80).output

    lazy = help_text()
    assert not cli.commands  # nothing was imported for it
    for name in COMMANDS:
        cli.add_command(load_command(name), name)
    assert help_text() == lazy
    assert set(cli.list_commands(click.Context(cli))) == set(COMMANDS)
