"""The docs in docs/ cover what the code offers: every command and option (docs/cli.md),
every config key the loader accepts (docs/config.md), every table, view and column of a
fresh archive (docs/schema.md). Each list is taken from the code itself, so a new option,
key or column without its line in the docs fails here."""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from harvester import config as config_module
from harvester.archive import open_archive
from harvester.cli import cli
from harvester.config import parse_config
from harvester.errors import ConfigError
from tests.conftest import ROOT

DOCS = ROOT / "docs"


def sections(markdown: str) -> dict[str, str]:
    """Each heading's names in backticks (`harvester sync`, `[http]`, `feed_talks` and
    `feed_talk_state`), joined by " and ", → its text up to the next heading."""
    found: dict[str, str] = {}
    name: str | None = None
    for line in markdown.splitlines():
        if line.startswith("#"):
            name = " and ".join(re.findall(r"`([^`]+)`", line)) or None
            if name is not None:
                found[name] = ""
        elif name is not None:
            found[name] += line + "\n"
    return found


def in_backticks(word: str, text: str) -> bool:
    """`word` opens a code span of `text` (`--lock`, `-o FILE`, `[site]`, `raw`)."""
    return re.search(r"`" + re.escape(word) + r"(?=[`\s=\[\]|,])", text) is not None


# --- docs/cli.md ------------------------------------------------------------------------


def commands(
    command: click.Command, path: str, parent: click.Context | None = None
) -> Iterator[tuple[str, click.Command, click.Context]]:
    """Every command of the app, the root first, with the context it runs in."""
    ctx = click.Context(command, info_name=path.rsplit(" ", 1)[-1], parent=parent)
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from commands(sub, f"{path} {name}", ctx)


def undocumented(command: click.Command, ctx: click.Context, text: str, *, root: bool) -> list[str]:
    """What the section `text` of `command` fails to name: an option's spelling (in a code
    span), an argument's name (a word, `URLS`); the help option is named once, with the
    global options."""
    help_option = command.get_help_option(ctx)
    missing = []
    for param in command.get_params(ctx):
        if param is help_option and not root:
            continue
        if isinstance(param, click.Option):
            missing += [
                o for o in [*param.opts, *param.secondary_opts] if not in_backticks(o, text)
            ]
        elif not re.search(rf"\b{re.escape(param.human_readable_name.rstrip('.'))}\b", text):
            missing.append(param.human_readable_name)
    return missing


def test_every_command_and_option_is_in_docs_cli() -> None:
    documented = sections((DOCS / "cli.md").read_text(encoding="utf-8"))
    walked = list(commands(cli, "harvester"))
    assert len(walked) > 10  # the walk reached the lazily loaded commands and `feeds`
    missing = []
    for path, command, ctx in walked:
        text = documented.get(path)
        if text is None:
            missing.append(f"no section `{path}`")
            continue
        missing += [
            f"`{path}`: {part}"
            for part in undocumented(command, ctx, text, root=path == "harvester")
        ]
    assert not missing, missing
    stale = set(n for n in documented if n.startswith("harvester")) - {p for p, _, _ in walked}
    assert not stale, f"docs/cli.md documents commands the app does not have: {stale}"


def example_invocations(markdown: str) -> list[list[str]]:
    """The arguments of each `harvester ...` call in the shell examples of `markdown`, up
    to a pipe, a redirection or the next command."""
    calls = []
    for block in re.findall(r"```sh\n(.*?)\n```", markdown, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line.replace("$(", " ").replace(")", " "), comments=True)
            while words:
                if words[0] in ("harvester", ".venv/bin/harvester"):
                    end = next(
                        (i for i, w in enumerate(words) if w in ("|", "||", "&&", ">", ";")),
                        len(words),
                    )
                    calls.append(words[1:end])
                    words = words[end:]
                words = words[1:]
    return calls


def test_the_examples_of_the_docs_use_real_commands_and_options() -> None:
    """Each example of docs/cli.md, docs/running.md and the README is parsed by the app
    (then `--help` stops it before it runs): a renamed command or option leaves no stale
    example behind."""
    pages = [DOCS / "cli.md", DOCS / "running.md", ROOT / "README.md"]
    calls = [c for page in pages for c in example_invocations(page.read_text(encoding="utf-8"))]
    assert len(calls) > 35
    wrong = []
    for args in calls:
        done = CliRunner().invoke(cli, [*args, "--help"])
        if done.exit_code != 0 or not done.output.startswith("Usage:"):
            wrong.append((args, done.output[-300:]))
    assert not wrong, wrong


# --- docs/config.md ---------------------------------------------------------------------

EVERY_TABLE = """
[archive]
[http]
[site]
[schedule]
[notifications]
[[feeds]]
url = "https://researchseminars.org/seminar/PhysicsMeetsML/ics"
[[notify]]
url = "json://example.org/hook"
"""


def keys_the_loader_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """`table.key` for every key the loader asks its TOML tables for (the tables tell
    `refuse_unknown` which keys they know), with `feeds[0]` read as `feeds`."""
    read: set[str] = set()
    original = config_module._Table.refuse_unknown

    def noting(table: Any) -> None:
        prefix = re.sub(r"\[\d+\]$", "", table.prefix)
        read.update(f"{prefix}.{key}" if prefix else key for key in table.seen)
        original(table)

    monkeypatch.setattr(config_module._Table, "refuse_unknown", noting)
    path = tmp_path / "harvester.toml"
    path.write_text(EVERY_TABLE, encoding="utf-8")
    config_module.load_config(path)
    return read


def keys_named_in_the_loader() -> set[str]:
    """Every key name the loader's code passes to a table's `get` or `duration`: a key read
    only inside an entry the sample config lacks is still found."""
    tree = ast.parse(Path(config_module.__file__).read_text(encoding="utf-8"))
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get", "duration")
        and len(node.args) >= 2
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def config_sections() -> dict[str, str]:
    """`[http]` and `[[feeds]]` sections of docs/config.md, by table name."""
    found = sections((DOCS / "config.md").read_text(encoding="utf-8"))
    return {name.strip("[]"): text for name, text in found.items() if name.startswith("[")}


@pytest.mark.slow
def test_every_config_key_the_loader_accepts_is_in_docs_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    documented = config_sections()
    read = keys_the_loader_reads(tmp_path, monkeypatch)
    assert {"archive.path", "http.retries", "feeds.url", "notify.kinds"} <= read
    missing = []
    for key in sorted(read):
        table, _, name = key.rpartition(".")
        if not table:
            if name not in documented:
                missing.append(f"no section for the table [{name}]")
        elif not in_backticks(name, documented.get(table, "")):
            missing.append(key)
    everywhere = "".join(documented.values())
    missing += [
        f"{name} (named in config.py)"
        for name in sorted(keys_named_in_the_loader())
        if not in_backticks(name, everywhere) and name not in documented
    ]
    assert not missing, missing


def toml_examples() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", DOCS / "config.md", DOCS / "running.md"]
    return [
        (page.name, block)
        for page in pages
        for block in re.findall(r"```toml\n(.*?)\n```", page.read_text(encoding="utf-8"), re.S)
    ]


def test_every_config_example_in_the_docs_loads(tmp_path: Path) -> None:
    examples = toml_examples()
    assert len(examples) >= 10
    refused = []
    for page, block in examples:
        try:
            parse_config(tomllib.loads(block), tmp_path / "harvester.toml")
        except (ConfigError, tomllib.TOMLDecodeError) as exc:
            refused.append((page, block[:60], str(exc)))
    assert not refused, refused


def test_docs_config_documents_no_key_the_loader_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = keys_the_loader_reads(tmp_path, monkeypatch)
    documented = config_sections()
    stale = []
    for table, text in documented.items():
        for key in re.findall(r"^\| `([a-z_]+)` \|", text, re.MULTILINE):
            if f"{table}.{key}" not in read:
                stale.append(f"{table}.{key}")
    assert not stale, stale


# --- docs/schema.md ---------------------------------------------------------------------


def objects_of_a_fresh_archive(tmp_path: Path) -> dict[str, list[str]]:
    """Every table and view of a new archive → its columns, generated ones included (the
    hidden columns of the full-text table, its own name and `rank`, are SQLite's)."""
    db = open_archive(tmp_path / "archive.db")
    names = [
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view')"
            " AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
    ]
    found = {
        name: [row[1] for row in db.execute(f'PRAGMA table_xinfo("{name}")') if row[6] != 1]
        for name in names
    }
    db.close()
    return found


def bookkeeping(markdown: str) -> set[str]:
    """The objects docs/schema.md names under its "Bookkeeping" heading."""
    text = markdown.split("\n## Bookkeeping\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([a-z_]+)`", text))


def test_every_table_view_and_column_of_the_archive_is_in_docs_schema(tmp_path: Path) -> None:
    markdown = (DOCS / "schema.md").read_text(encoding="utf-8")
    documented = sections(markdown)
    kept_aside = bookkeeping(markdown)
    objects = objects_of_a_fresh_archive(tmp_path)
    assert {"talks", "talk_versions", "feeds", "fetches", "upcoming_talks"} <= set(objects)
    missing = []
    for name, columns in objects.items():
        if name in kept_aside:
            continue
        text = next(
            (t for heading, t in documented.items() if name in heading.split(" and ")), None
        )
        if text is None:
            missing.append(f"{name}: no section, and not listed as bookkeeping")
            continue
        missing += [f"{name}.{column}" for column in columns if not in_backticks(column, text)]
    assert not missing, missing
    stale = {h for h in documented if not set(h.split(" and ")) <= set(objects)}
    assert not stale, f"docs/schema.md describes objects a new archive lacks: {stale}"
    assert kept_aside <= set(objects), kept_aside - set(objects)


def test_every_canned_query_of_the_metadata_is_named_in_docs_schema() -> None:
    metadata = yaml.safe_load(
        (ROOT / "harvester" / "datasette" / "metadata.yml").read_text(encoding="utf-8")
    )
    queries = metadata["databases"]["archive"]["queries"]
    schema = (DOCS / "schema.md").read_text(encoding="utf-8")
    assert queries
    assert [q for q in queries if not in_backticks(q, schema)] == []
