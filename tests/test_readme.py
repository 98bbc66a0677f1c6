from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import icalendar
import pytest
from click.testing import CliRunner

from harvester.cli import cli
from tests.conftest import ROOT, SAMPLE


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = re.findall(r"```sh\n(.*?)\n```", readme, re.DOTALL)
    test_command = next(c for c in commands if "pytest" in c)
    assert f'TEST_COMMAND="{test_command}"' in ci
    assert 'eval "$TEST_COMMAND"' in ci


def section(readme: str, heading: str) -> str:
    start = readme.index(f"\n## {heading}\n")
    end = readme.find("\n## ", start + 1)
    return readme[start : end if end > 0 else None]


@pytest.mark.slow
def test_every_way_the_readme_reads_the_archive_works(tmp_path: Path) -> None:
    """The commands of "Reading the archive", run as given from a checkout whose
    `data/archive.db` the real CLI made (Datasette answers one request, `--get`, and exits)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```sh\n(.*?)\n```", section(readme, "Reading the archive"), re.DOTALL)
    commands = block.splitlines()
    assert [c.split()[0] for c in commands] == [
        "sqlite3",
        ".venv/bin/sqlite-utils",
        ".venv/bin/python",
        ".venv/bin/python",
        ".venv/bin/datasette",
    ]
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (tmp_path / "harvester").symlink_to(ROOT / "harvester")
    db = tmp_path / "data" / "archive.db"
    imported = CliRunner().invoke(cli, ["--db", str(db), "import", str(SAMPLE)])
    assert imported.exit_code == 0, imported.output
    outputs = []
    for command in commands:
        if command.startswith("sqlite3") and shutil.which("sqlite3") is None:
            continue  # no shell on this machine: tests/test_plain_archive.py says so too
        if "datasette" in command:
            command += " --get /archive/talk_versions.json"
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
        outputs.append(done.stdout)
    if shutil.which("sqlite3"):
        assert outputs.pop(0).startswith("ok\nPhysicsMeetsML/")
    rows, counts, raw, page = outputs
    assert json.loads(rows.splitlines()[0])["uid"].startswith("PhysicsMeetsML/")
    assert re.search(r"\('new', \d+\)", counts)
    assert raw.startswith("BEGIN:VEVENT") and "UID:PhysicsMeetsML/" in raw
    assert json.loads(page)["rows"]


@pytest.mark.slow
def test_the_offline_example_with_the_shipped_config_prints_the_abstract_exactly(
    tmp_path: Path,
) -> None:
    """The shipped config, unchanged (its commented examples hold a URL with a password),
    must not change what the README's offline example prints: masking never touches text
    that holds no secret ("Message passing" once printed as "Message …ing")."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = next(c for c in re.findall(r"```sh\n(.*?)\n```", readme, re.DOTALL) if "import" in c)
    (tmp_path / "config").mkdir()
    shutil.copy(ROOT / "config" / "harvester.toml", tmp_path / "config" / "harvester.toml")
    shutil.copytree(ROOT / "data" / "samples", tmp_path / "data" / "samples")
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parent.parent)
    outputs = []
    for command in block.splitlines():
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, (command, done.stderr[-2000:])
        outputs.append(done.stdout)
    (talk,) = [
        r
        for r in icalendar.Calendar.from_ical(SAMPLE.read_bytes()).walk("VEVENT")
        if str(r["UID"]) == "PhysicsMeetsML/1"
    ]
    abstract = str(talk["DESCRIPTION"]).split("Abstract\n", 1)[1].strip()
    assert abstract.startswith("Message passing algorithms")
    assert abstract in outputs[1].replace("\r\n", "\n")  # the CSV
    assert outputs[2].startswith("PhysicsMeetsML/1: Natural Graph Networks")
    assert "…" not in "".join(outputs)


def test_the_readme_stays_short_and_has_its_sections() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    headings = re.findall(r"^#+ (.+)$", readme, re.MULTILINE)
    for heading in (
        "Quick start",
        "A background daemon",
        "Cron: a one-off `sync`",
        "Querying the archive with Datasette",
        "Configuration",
        "Notifications",  # config/harvester.toml points there
        "Reading the archive",
        "Architecture",
        "Documentation",
    ):
        assert heading in headings, heading


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_between_the_docs_reaches_a_file_and_heading() -> None:
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, fragment = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}")
            elif fragment and linked.suffix == ".md":
                headings = re.findall(r"^#+ (.+)$", linked.read_text(encoding="utf-8"), re.M)
                if fragment not in {anchor(h) for h in headings}:
                    broken.append(f"{page.name}: {target}")
    assert not broken, broken
