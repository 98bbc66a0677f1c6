"""A built wheel, installed outside the checkout, serves the archive with the shipped metadata.

The wheel is built (`pip wheel --no-deps`) from a copy of the sources and installed without
dependencies into a fresh venv in tmp_path. That venv borrows the dependencies from the
test environment's site-packages by a plain path in a .pth file: a plain path is not a site
directory, so the .pth files there (the editable install's finder, which maps `harvester`
to this checkout) are not run, and `harvester` can only come from the wheel. Then
`harvester serve` runs from that venv with its cwd in tmp_path and answers a canned query,
which exists only in the shipped metadata.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, Harvester
from tests.test_serve import free_port, serving


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _isolation() -> list[str]:
    """Build with this environment's setuptools when it can build wheels (offline), else let
    pip fetch the build requirements (from its cache or the package index)."""
    try:
        from importlib.metadata import version

        major, minor = (int(part) for part in version("setuptools").split(".")[:2])
        has_bdist_wheel = (major, minor) >= (70, 1) or importlib.util.find_spec("wheel")
    except Exception:
        return []
    return ["--no-build-isolation"] if major >= 68 and has_bdist_wheel else []


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv, outside the checkout, with only the wheel of seminar-harvester."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "harvester", source / "harvester", ignore=shutil.ignore_patterns("__pycache__")
    )
    wheels = base / "wheels"
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", *_isolation(), "-q",
        "-w", str(wheels), str(source), cwd=base,
    )  # fmt: skip
    (wheel,) = wheels.glob("seminar_harvester-*.whl")

    venv = base / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=base)
    python = venv / "bin" / "python"
    purelib = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=base).strip())  # fmt: skip
    # the dependencies: a plain path entry (its .pth files are not processed, see above)
    (purelib / "_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    _run(
        sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
        str(wheel), cwd=base,
    )  # fmt: skip
    return venv


@pytest.mark.slow
def test_the_wheel_ships_the_metadata_and_harvester_comes_from_it(wheel_venv: Path) -> None:
    python = wheel_venv / "bin" / "python"
    out = _run(
        str(python), "-c",
        "import harvester, importlib.resources as r;"
        "print(harvester.__file__);"
        "print((r.files('harvester.datasette') / 'metadata.yml').is_file())",
        cwd=wheel_venv,
    )  # fmt: skip
    location, shipped = out.split()
    assert Path(location).is_relative_to(wheel_venv), location
    assert not Path(location).is_relative_to(ROOT)
    assert shipped == "True"


@pytest.mark.slow
def test_the_installed_wheel_serves_a_canned_query(wheel_venv: Path, harvester: Harvester) -> None:
    assert harvester("sync").exit_code == 0
    outside = wheel_venv.parent / "elsewhere"  # no config/ here, no checkout
    outside.mkdir(exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("HARVESTER_DB", "HARVESTER_CONFIG")}
    env.pop("PYTHONPATH", None)
    command = [str(wheel_venv / "bin" / "harvester"), "--db", str(harvester.db_path), "serve"]
    with serving(command, port, cwd=outside, env=env) as (base, _process):
        # a canned query of the shipped metadata, and its title
        rows = httpx.get(
            f"{base}/archive/speaker_talks.json?speaker=Noether&_shape=array", timeout=10
        ).json()
        assert [row["uid"] for row in rows] == ["AlgGeom/2"]
        page = httpx.get(f"{base}/archive/speaker_talks?speaker=Noether", timeout=10)
        assert page.status_code == 200 and "talks across series" in page.text
        calendar = httpx.get(f"{base}/archive/calendar.ics", timeout=10)
        assert calendar.status_code == 200 and "X-WR-CALNAME:Seminar calendar" in calendar.text
