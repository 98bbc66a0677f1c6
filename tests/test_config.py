"""Config lookup, durations, overrides and refusal of bad files."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from harvester.cli import cli
from harvester.config import load_config
from harvester.errors import ConfigError
from tests.conftest import ROOT


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_loads(workdir: Path) -> None:
    config = load_config(ROOT / "config" / "harvester.toml")
    assert [f.url for f in config.feeds] == [
        "https://researchseminars.org/seminar/PhysicsMeetsML/ics"
    ]
    assert [f.name for f in config.feeds] == ["PhysicsMeetsML"]
    assert config.archive_path == ROOT / "config" / ".." / "data" / "archive.db"
    assert config.schedule.interval == 1800 and config.schedule.jitter == 120


def test_lookup_order_flag_then_env_then_default(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "config").mkdir()
    write(workdir / "config" / "harvester.toml", '[archive]\npath = "default.db"\n')
    env = write(workdir / "env.toml", '[archive]\npath = "env.db"\n')
    flag = write(workdir / "flag.toml", '[archive]\npath = "flag.db"\n')
    assert load_config().archive_path.name == "default.db"
    monkeypatch.setenv("HARVESTER_CONFIG", str(env))
    assert load_config().archive_path.name == "env.db"
    assert load_config(flag).archive_path.name == "flag.db"
    assert load_config(flag, db_override="other.db").archive_path == Path("other.db")
    monkeypatch.setenv("HARVESTER_DB", "fromenv.db")
    assert load_config(flag).archive_path == Path("fromenv.db")


def test_relative_archive_path_resolves_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    config = load_config(write(tmp_path / "etc" / "h.toml", '[archive]\npath = "../var/a.db"\n'))
    assert config.archive_path == tmp_path / "etc" / ".." / "var" / "a.db"


def test_per_feed_overrides_and_normalised_urls(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path / "h.toml",
            '[schedule]\ninterval = "45m"\njitter = 0\n'
            '[[feeds]]\nurl = "webcal://mathseminars.org/seminar/NT/ics"\ninterval = "6h"\n'
            '[[feeds]]\nurl = "https://researchseminars.org/user/ics/SECRETTOKEN123"\nname = "mine"\n'
            '[[feeds]]\nurl = "https://example.org/cal.ics"\nenabled = false\n',
        )
    )
    nt, mine, other = config.feeds
    assert nt.url == "https://researchseminars.org/seminar/NT/ics" and nt.name == "NT"
    assert nt.interval_or(config.schedule.interval) == 6 * 3600
    assert mine.interval_or(config.schedule.interval) == 45 * 60 and mine.name == "mine"
    assert not other.enabled and config.schedule.jitter == 0


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[schedule]\ninterval = "soon"\n', "schedule.interval", "expected a duration"),
        ('[http]\ntimeout = "fast"\n', "http.timeout", "expected int or float"),
        ("[http]\nmax_bytes = -1\n", "http.max_bytes", "must be positive"),
        ("[http]\nretries = true\n", "http.retries", "expected int"),
        ('[[feeds]]\nname = "x"\n', "feeds[0].url", "missing"),
        ('[[feeds]]\nurl = "file:///etc/passwd"\n', "feeds[0].url", "only http(s) and webcal"),
        ('[[feeds]]\nurl = "ftp://example.org/x.ics"\n', "feeds[0].url", "only http(s) and webcal"),
        (
            '[[feeds]]\nurl = "https://a.org/x"\nintervall = "1h"\n',
            "feeds[0].intervall",
            "unknown key",
        ),
        ('[archiv]\npath = "x"\n', "archiv", "unknown key"),
        (
            '[[feeds]]\nurl = "https://a.org/x"\n[[feeds]]\nurl = "https://a.org/x"\n',
            "feeds[1].url",
            "same feed as feeds[0]",
        ),
        ("[archive\npath = 1\n", "", "not valid TOML"),
        (
            '[[notify]]\nurl = "json://h/"\nkinds = [{a = 1}]\n',
            "notify[0].kinds",
            "expected a list of kinds of change",
        ),
        ("[http]\nallowed_hosts = [1]\n", "http.allowed_hosts", "expected a list of host names"),
        ('[[notify]]\nurl = "json://h/"\nseries = [""]\n', "notify[0].series", "shortnames"),
    ],
)
def test_bad_config_names_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.path == str(path)
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_cli_refuses_bad_config_with_one_line_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", '[schedule]\ninterval = "soon"\n')
    result = CliRunner().invoke(
        cli, ["--config", str(path), "--db", str(tmp_path / "a.db"), "sync"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: bad config: {path}: schedule.interval: expected a duration like '30m' or '6h', got 'soon'"
    ]
    assert not (tmp_path / "a.db").exists()  # nothing ran


def test_missing_config_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "nope.toml"), "status"])
    assert result.exit_code == 2
    assert "nope.toml: no such file" in result.stderr


def test_a_personal_token_never_appears_in_config_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path / "h.toml",
        '[[feeds]]\nurl = "https://researchseminars.org/user/ics/SECRETTOKEN123"\nbogus = 1\n',
    )
    result = CliRunner().invoke(cli, ["--config", str(path), "sync"])
    assert result.exit_code == 2 and "SECRETTOKEN123" not in result.output + result.stderr
