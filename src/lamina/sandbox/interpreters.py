"""The language runtimes this host can run: one Python 3.X interpreter per `python3.X`, one Node.js per `nodejsN.x`.

AWS runs a `python3.12` function on Python 3.12 and a `nodejs22.x` one on Node.js 22, so Lamina does too: each
runtime is resolved to an interpreter installed on the host, looked for in this order (the first that runs wins):

- the `runtime_paths` setting (`python3.12=/opt/py312/bin/python3.12,nodejs22.x=/opt/node22/bin/node`);
- the system's: /usr/bin and /usr/local/bin (`python3.12`; `node` or `nodejs`, whatever its major version);
- Python only: pyenv (`$PYENV_ROOT` or ~/.pyenv: versions/3.12.*, newest patch first) and uv
  (`$UV_PYTHON_INSTALL_DIR` or ~/.local/share/uv/python: cpython-3.12.*);
- Node.js only: nvm (`$NVM_DIR` or ~/.nvm: versions/node/v22.*).

Each candidate is run once (in parallel, at start-up) to learn its exact version and installation root, so a broken
install is skipped rather than chosen. A runtime with no interpreter is reported with how to install one; it is
looked for again when a function asks for it, so installing one needs no restart.

The sandbox makes an interpreter visible (sandbox/linux.py): its installation root read-only at the same path
(pyenv's builds find libpython through an absolute RUNPATH), and `/var/lang/bin` holding `python`, `python3` and
`python3.X`, or `node`, as AWS's runtimes have them.
"""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# AWS's runtimes Lamina can run. Python 3.9 is the oldest the in-sandbox runtime supports (socket.send_fds, the
# built-in generics); AWS no longer takes new python3.8 functions either.
PYTHON_MINORS = tuple(range(9, 16))
PYTHON_RUNTIMES = tuple(f"python3.{minor}" for minor in PYTHON_MINORS)
NODE_MAJORS = (18, 20, 22, 24, 26)
NODE_RUNTIMES = tuple(f"nodejs{major}.x" for major in NODE_MAJORS)
LANGUAGE_RUNTIMES = PYTHON_RUNTIMES + NODE_RUNTIMES

PROBE_TIMEOUT_S = 10.0
# Run by each Python candidate: its version and installation root, and that the modules the runtime needs load
# (ctypes confines each environment under the linux backend).
_PYTHON_PROBE = ("import ctypes, json, select, socket, sys\n"
                 "print(json.dumps({'version': '%d.%d.%d' % sys.version_info[:3], 'home': sys.base_prefix}))")
_NODE_PROBE = "process.stdout.write(process.versions.node)"
_VERSION_DIR = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_UV_DIR = re.compile(r"^cpython-(\d+)\.(\d+)\.(\d+)-linux-[^+]*$")  # not the +freethreaded builds


@dataclass(frozen=True)
class Interpreter:
    """One runtime's interpreter on this host."""

    runtime: str      # python3.12, nodejs22.x
    version: str      # 3.12.1, 22.11.0
    executable: str   # absolute, symlinks resolved: the same path inside the linux sandbox
    home: str         # the installation's root (sys.base_prefix; a Node.js's directory above bin/)
    source: str       # configured, system, pyenv, uv, nvm

    @property
    def language(self) -> str:
        return "python" if self.runtime.startswith("python") else "nodejs"

    @property
    def command_names(self) -> tuple[str, ...]:
        """The names it has in /var/lang/bin, as on AWS."""
        if self.language == "python":
            return ("python", "python3", self.runtime)
        return ("node",)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def describe(self) -> str:
        return f"{self.runtime} {self.version} ({self.source}: {self.executable})"

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "executable": self.executable, "home": self.home, "source": self.source}


@dataclass
class _Candidate:
    runtime: str
    path: str
    source: str


@dataclass
class SearchPlaces:
    """Where interpreters are looked for (tests point these at their own directories)."""

    system_dirs: tuple[str, ...] = ("/usr/bin", "/usr/local/bin")
    pyenv_root: str = field(default_factory=lambda: os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv"))
    uv_dir: str = field(default_factory=lambda: os.environ.get("UV_PYTHON_INSTALL_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "uv", "python"))
    nvm_dir: str = field(default_factory=lambda: os.environ.get("NVM_DIR") or os.path.expanduser("~/.nvm"))


def parse_runtime_paths(text: str) -> dict[str, str]:
    """The runtime_paths setting: `runtime=path` pairs, comma-separated. ValueError names a bad entry."""
    out: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        runtime, sep, path = item.partition("=")
        runtime, path = runtime.strip(), path.strip()
        if not sep or runtime not in LANGUAGE_RUNTIMES or not path:
            raise ValueError(f"runtime_paths: {item!r} is not RUNTIME=PATH with RUNTIME one of "
                             f"{', '.join(LANGUAGE_RUNTIMES)}")
        out[runtime] = os.path.expanduser(path)
    return out


def _newest_first(paths: Iterable[tuple[tuple[int, ...], str]]) -> list[str]:
    return [path for _, path in sorted(paths, reverse=True)]


def _candidates(runtime: str, configured: Mapping[str, str], places: SearchPlaces) -> list[_Candidate]:
    found: list[_Candidate] = []
    if runtime in configured:
        found.append(_Candidate(runtime, configured[runtime], "configured"))
    if runtime.startswith("python"):
        minor = int(runtime.split(".")[1])
        name = f"python3.{minor}"
        found += [_Candidate(runtime, f"{d}/{name}", "system") for d in places.system_dirs]
        pyenv = []
        for path in glob.glob(f"{glob.escape(places.pyenv_root)}/versions/3.{minor}.*"):
            m = _VERSION_DIR.match(os.path.basename(path))
            if m and int(m.group(2)) == minor:
                pyenv.append(((int(m.group(3)),), f"{path}/bin/{name}"))
        found += [_Candidate(runtime, p, "pyenv") for p in _newest_first(pyenv)]
        uv = []
        for path in glob.glob(f"{glob.escape(places.uv_dir)}/cpython-3.{minor}.*"):
            m = _UV_DIR.match(os.path.basename(path))
            if m and int(m.group(2)) == minor:
                uv.append(((int(m.group(3)),), f"{path}/bin/{name}"))
        found += [_Candidate(runtime, p, "uv") for p in _newest_first(uv)]
    else:
        major = int(runtime[len("nodejs"):].split(".")[0])
        found += [_Candidate(runtime, f"{d}/{name}", "system")
                  for d in places.system_dirs for name in ("node", "nodejs")]
        nvm = []
        for path in glob.glob(f"{glob.escape(places.nvm_dir)}/versions/node/v{major}.*"):
            m = _VERSION_DIR.match(os.path.basename(path))
            if m and int(m.group(1)) == major:
                nvm.append(((int(m.group(2)), int(m.group(3))), f"{path}/bin/node"))
        found += [_Candidate(runtime, p, "nvm") for p in _newest_first(nvm)]
    usable, seen = [], set()
    for cand in found:
        # A configured path is tried even if it is wrong, so that the missing runtime's reason names it.
        if cand.source != "configured" and not os.access(cand.path, os.X_OK):
            continue
        real = os.path.realpath(cand.path)
        if real not in seen:  # /usr/bin/nodejs -> node, python3.12 in both /usr/bin and /usr/local/bin
            seen.add(real)
            usable.append(cand)
    return usable


def _missing_reason(runtime: str, places: SearchPlaces, tried: list[str]) -> str:
    """Why a runtime has no interpreter here, and how to install one."""
    setting = f'runtime_paths setting (LAMINA_RUNTIME_PATHS="{runtime}=/path/to/{{}}")'
    seen = f" Tried: {'; '.join(tried)}." if tried else ""
    if runtime.startswith("python"):
        version = runtime[len("python"):]
        where = (f"{', '.join(places.system_dirs)}, pyenv ({places.pyenv_root}/versions) and uv ({places.uv_dir})")
        return (f"No Python {version} interpreter on this host (looked in {where}).{seen} Install one, for example "
                f"`uv python install {version}`, `pyenv install {version}` or your distribution's python{version} "
                f"package, or name one with the {setting.format(f'python{version}')}.")
    major = runtime[len("nodejs"):].split(".")[0]
    where = f"{', '.join(places.system_dirs)} and nvm ({places.nvm_dir}/versions/node)"
    return (f"No Node.js {major} on this host (looked in {where}).{seen} Install it, for example `nvm install "
            f"{major}` or the Node.js {major} package of your distribution (NodeSource), or name one with the "
            f"{setting.format('node')}.")


@dataclass(frozen=True)
class _Probed:
    version: str
    executable: str
    home: str


def _probe_key(candidate: _Candidate) -> tuple[str, bool]:
    return os.path.realpath(candidate.path), candidate.runtime.startswith("python")


def _start_probe(key: tuple[str, bool]) -> subprocess.Popen | None:
    path, python = key
    argv = [path, "-I", "-S", "-c", _PYTHON_PROBE] if python else [path, "-e", _NODE_PROBE]
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PATH": "/usr/bin:/bin"}, cwd="/")
    except OSError:
        return None


def _finish_probe(key: tuple[str, bool], proc: subprocess.Popen | None) -> _Probed | str:
    """What the probe found, or why the executable is not an interpreter Lamina can use (a short note)."""
    path, python = key
    if proc is None:
        return f"{path}: cannot run it"
    try:
        out, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return f"{path}: no answer within {PROBE_TIMEOUT_S:g} s"
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        return f"{path}: {lines[-1] if lines else f'exit status {proc.returncode}'}"
    if python:
        try:
            info = json.loads(out)
            return _Probed(str(info["version"]), path, os.path.realpath(str(info["home"])))
        except (ValueError, KeyError, TypeError):
            return f"{path}: unexpected answer {out[:100]!r}"
    version = out.decode(errors="replace").strip()
    if not _VERSION_DIR.match(version):
        return f"{path}: unexpected answer {out[:100]!r}"
    return _Probed(version, path, os.path.dirname(os.path.dirname(path)))


def _matches(runtime: str, version: str) -> bool:
    if runtime.startswith("python"):
        return ".".join(version.split(".")[:2]) == runtime[len("python"):]
    return version.split(".")[0] == runtime[len("nodejs"):].split(".")[0]


class HostRuntimes:
    """The interpreter of every language runtime on this host, or why there is none (see the module's docstring)."""

    def __init__(self, configured: Mapping[str, str] | None = None, places: SearchPlaces | None = None) -> None:
        self.configured = dict(configured or {})
        self.places = places or SearchPlaces()
        self.found: dict[str, Interpreter] = {}
        self.missing: dict[str, str] = {}

    @classmethod
    def discover(cls, configured: Mapping[str, str] | None = None, places: SearchPlaces | None = None) -> HostRuntimes:
        runtimes = cls(configured, places)
        runtimes.refresh(LANGUAGE_RUNTIMES)
        return runtimes

    def refresh(self, runtimes: Iterable[str]) -> None:
        """Look for these runtimes' interpreters again: every runtime's first candidate is run at once (an
        executable several candidates share, once), then the next candidate of those whose first was no good, and
        so on."""
        pending = {rt: _candidates(rt, self.configured, self.places) for rt in runtimes}
        tried: dict[str, list[str]] = {rt: [] for rt in pending}
        while pending:
            heads = {rt: cands.pop(0) for rt, cands in pending.items() if cands}
            for rt in [rt for rt in pending if rt not in heads]:
                del pending[rt]
                self.found.pop(rt, None)
                self.missing[rt] = _missing_reason(rt, self.places, tried[rt])
            keys = {_probe_key(cand) for cand in heads.values()}
            procs = {key: _start_probe(key) for key in keys}
            results = {key: _finish_probe(key, proc) for key, proc in procs.items()}
            for rt, cand in heads.items():
                result = results[_probe_key(cand)]
                if isinstance(result, str):
                    tried[rt].append(result)
                elif not _matches(rt, result.version):
                    language = "Python" if rt.startswith("python") else "Node.js"
                    tried[rt].append(f"{cand.path} is {language} {result.version}")
                else:
                    self.found[rt] = Interpreter(rt, result.version, result.executable, result.home, cand.source)
                    self.missing.pop(rt, None)
                    del pending[rt]

    def get(self, runtime: str) -> Interpreter | None:
        return self.found.get(runtime)

    def check(self, runtime: str) -> str | None:
        """None if `runtime` can run here (or needs no interpreter: provided.*); else why not, with how to
        install one. A missing runtime is looked for again first (one may have been installed since)."""
        if runtime not in LANGUAGE_RUNTIMES or runtime in self.found:
            return None
        self.refresh([runtime])
        return self.missing.get(runtime)

    def as_dict(self) -> dict[str, object]:
        """For health: each runtime's interpreter, and why the others are missing."""
        return {"available": {rt: self.found[rt].as_dict() for rt in LANGUAGE_RUNTIMES if rt in self.found},
                "missing": {rt: self.missing[rt] for rt in LANGUAGE_RUNTIMES if rt in self.missing}}

    def summary(self) -> str:
        """One line for the banner."""
        have = ", ".join(f"{rt} ({self.found[rt].version}, {self.found[rt].source})"
                         for rt in LANGUAGE_RUNTIMES if rt in self.found)
        missing = [rt for rt in LANGUAGE_RUNTIMES if rt in self.missing]
        return (have or "none") + (f"; not on this host: {', '.join(missing)} (lamina runtimes says why)"
                                   if missing else "")
