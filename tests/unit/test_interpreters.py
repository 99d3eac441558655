"""Finding each language runtime's interpreter on the host (sandbox/interpreters.py), with fake interpreters: shell
scripts that answer the probe as a Python or a Node.js of a given version would, or fail as a broken install does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lamina.sandbox.interpreters import HostRuntimes, SearchPlaces, parse_runtime_paths


def fake(path: Path, answer: str | None, home: str = "/h") -> str:
    """An executable at path answering the probe: a Python version ("3.12.7"), a Node.js one ("v22.1.0"), or
    None for a broken interpreter (the probe exits 1 with an error)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if answer is None:
        body = 'echo "ModuleNotFoundError: No module named \'ctypes\'" >&2; exit 1'
    elif answer.startswith("v"):
        body = f"printf %s '{answer[1:]}'"
    else:
        body = f"echo '{json.dumps({'version': answer, 'home': home})}'"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def places(tmp_path: Path) -> SearchPlaces:
    return SearchPlaces(system_dirs=(str(tmp_path / "usr/bin"),), pyenv_root=str(tmp_path / "pyenv"),
                        uv_dir=str(tmp_path / "uv"), nvm_dir=str(tmp_path / "nvm"))


def test_an_empty_host_has_no_runtime_and_says_how_to_install_one(places: SearchPlaces) -> None:
    found = HostRuntimes.discover(places=places)
    assert found.found == {}
    reason = found.missing["python3.12"]
    assert "No Python 3.12 interpreter on this host" in reason
    assert "uv python install 3.12" in reason and "pyenv install 3.12" in reason
    assert 'LAMINA_RUNTIME_PATHS="python3.12=' in reason
    assert "nvm install 22" in found.missing["nodejs22.x"]
    assert found.check("provided.al2023") is None  # needs no interpreter
    assert found.check("python3.12") == reason


def test_system_before_pyenv_before_uv_and_the_newest_patch(places: SearchPlaces, tmp_path: Path) -> None:
    fake(tmp_path / "usr/bin/python3.11", "3.11.2", home="/usr")
    fake(tmp_path / "pyenv/versions/3.11.9/bin/python3.11", "3.11.9")
    fake(tmp_path / "pyenv/versions/3.12.1/bin/python3.12", "3.12.1", home=str(tmp_path / "pyenv/versions/3.12.1"))
    fake(tmp_path / "pyenv/versions/3.12.10/bin/python3.12", "3.12.10", home=str(tmp_path / "pyenv/versions/3.12.10"))
    fake(tmp_path / "pyenv/versions/3.12.3t/bin/python3.12", "3.12.3")  # free-threaded: not a candidate
    fake(tmp_path / "uv/cpython-3.12.11-linux-x86_64-gnu/bin/python3.12", "3.12.11")
    fake(tmp_path / "uv/cpython-3.13.2-linux-x86_64-gnu/bin/python3.13", "3.13.2")
    fake(tmp_path / "uv/cpython-3.13.5+freethreaded-linux-x86_64-gnu/bin/python3.13", "3.13.5")
    found = HostRuntimes.discover(places=places)
    assert (found.found["python3.11"].source, found.found["python3.11"].version) == ("system", "3.11.2")
    py312 = found.found["python3.12"]
    assert (py312.source, py312.version) == ("pyenv", "3.12.10")  # 10 > 3 > 1, numerically
    assert py312.home == str(tmp_path / "pyenv/versions/3.12.10")
    assert py312.executable == str(tmp_path / "pyenv/versions/3.12.10/bin/python3.12")
    assert (found.found["python3.13"].source, found.found["python3.13"].version) == ("uv", "3.13.2")
    assert py312.command_names == ("python", "python3", "python3.12")


def test_a_broken_or_wrong_interpreter_is_passed_over(places: SearchPlaces, tmp_path: Path) -> None:
    fake(tmp_path / "usr/bin/python3.12", None)  # no ctypes: the next candidate
    fake(tmp_path / "pyenv/versions/3.12.4/bin/python3.12", "3.11.0")  # says it is another version
    fake(tmp_path / "uv/cpython-3.12.2-linux-x86_64-gnu/bin/python3.12", "3.12.2")
    found = HostRuntimes.discover(places=places)
    assert (found.found["python3.12"].source, found.found["python3.12"].version) == ("uv", "3.12.2")
    fake(tmp_path / "uv/cpython-3.12.2-linux-x86_64-gnu/bin/python3.12", None)
    found = HostRuntimes.discover(places=places)
    reason = found.missing["python3.12"]
    assert "No module named 'ctypes'" in reason and "is Python 3.11.0" in reason, reason


def test_a_configured_path_comes_first_and_a_bad_one_is_named(places: SearchPlaces, tmp_path: Path) -> None:
    fake(tmp_path / "usr/bin/python3.12", "3.12.1", home="/usr")
    mine = fake(tmp_path / "opt/py/bin/python3.12", "3.12.8", home=str(tmp_path / "opt/py"))
    found = HostRuntimes.discover({"python3.12": mine}, places=places)
    assert (found.found["python3.12"].source, found.found["python3.12"].executable) == ("configured", mine)
    found = HostRuntimes.discover({"python3.13": str(tmp_path / "nowhere/python3.13")}, places=places)
    assert "nowhere/python3.13: cannot run it" in found.missing["python3.13"]


def test_one_node_serves_the_runtime_of_its_major_version(places: SearchPlaces, tmp_path: Path) -> None:
    node = fake(tmp_path / "usr/bin/node", "v20.11.1")
    os.symlink(node, tmp_path / "usr/bin/nodejs")
    fake(tmp_path / "nvm/versions/node/v22.3.0/bin/node", "v22.3.0")
    fake(tmp_path / "nvm/versions/node/v22.12.0/bin/node", "v22.12.0")
    found = HostRuntimes.discover(places=places)
    assert (found.found["nodejs20.x"].version, found.found["nodejs20.x"].source) == ("20.11.1", "system")
    assert found.found["nodejs20.x"].home == str(tmp_path / "usr")
    assert found.found["nodejs20.x"].command_names == ("node",)
    assert (found.found["nodejs22.x"].version, found.found["nodejs22.x"].source) == ("22.12.0", "nvm")
    reason = found.missing["nodejs24.x"]
    assert f"{node} is Node.js 20.11.1" in reason and reason.count("is Node.js 20.11.1") == 1  # nodejs -> node
    assert "nvm install 24" in reason


def test_a_runtime_installed_later_is_found_when_asked_for(places: SearchPlaces, tmp_path: Path) -> None:
    found = HostRuntimes.discover(places=places)
    assert found.get("python3.10") is None
    fake(tmp_path / "usr/bin/python3.10", "3.10.4", home="/usr")
    assert found.check("python3.10") is None
    assert found.get("python3.10") is not None and found.as_dict()["available"]["python3.10"]["version"] == "3.10.4"


def test_runtime_paths_setting() -> None:
    assert parse_runtime_paths("") == {}
    assert parse_runtime_paths(" python3.12=/opt/a/python3.12 , nodejs22.x=/opt/n/bin/node") == {
        "python3.12": "/opt/a/python3.12", "nodejs22.x": "/opt/n/bin/node"}
    for bad in ("python3.12", "python2.7=/usr/bin/python2", "nodejs22.x=", "java21=/usr/bin/java"):
        with pytest.raises(ValueError, match="runtime_paths"):
            parse_runtime_paths(bad)
