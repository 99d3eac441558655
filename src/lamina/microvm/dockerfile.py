"""The Dockerfile subset MicroVM images are built from.

Supported: FROM, WORKDIR, COPY, ADD (local files, directories and tar archives; no URLs), RUN, ENV
(`ENV K=V ...` and `ENV K V`), EXPOSE, CMD, ENTRYPOINT (exec and shell forms, combined as Docker
does), USER, ARG (defaults only) and LABEL / MAINTAINER (ignored). Comments, parser directives and
`\\` continuations are handled; `$VAR` / `${VAR}` / `${VAR:-x}` / `${VAR:+x}` are substituted where
Docker substitutes them (not in RUN / CMD / ENTRYPOINT, where the shell does). Anything else —
multi-stage builds, HEALTHCHECK, VOLUME, SHELL, ONBUILD, ... — fails the build naming its line.

FROM: there is one base, the host's read-only system (its /usr and a curated /etc). It is named
`lamina/base` (any tag), and AWS's `public.ecr.aws/lambda/microvms:<tag>` means the same thing, so
Dockerfiles written for AWS build unchanged. Any other image is an error.

Package-manager lines (`dnf|yum|microdnf|apt-get|apt install ...`, `... clean all`, `... update`)
cannot install anything into that read-only base. A line that only asks for what the base already
provides (`dnf install -y python3 python3-pip` on a host with python3 and pip) is satisfied: the
builder logs "base already provides ..." and skips it. Anything else fails naming the line and the
missing packages (see `package_request`).

This module only parses; builder.py runs the result.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
from dataclasses import dataclass, field

from lamina.microvm.engine import BuildError

SUPPORTED = ("FROM", "WORKDIR", "COPY", "ADD", "RUN", "ENV", "EXPOSE", "CMD", "ENTRYPOINT", "USER", "ARG",
             "LABEL", "MAINTAINER")
# Docker instructions Lamina knows of but does not build (not typos of a supported one).
_DOCKER_ONLY = frozenset({"HEALTHCHECK", "VOLUME", "SHELL", "ONBUILD", "STOPSIGNAL"})
BASE_IMAGES = ("lamina/base", "public.ecr.aws/lambda/microvms")
SHELL = ["/bin/sh", "-c"]


@dataclass
class Instruction:
    lineno: int                 # the line the instruction starts on (1-based)
    keyword: str                # upper-case
    text: str                   # the arguments, continuations joined, variables not yet substituted
    # Parsed forms (filled per keyword)
    args: list[str] = field(default_factory=list)      # COPY/ADD sources + destination, EXPOSE ports
    flags: dict[str, str] = field(default_factory=dict)  # --chown=..., --chmod=...
    pairs: dict[str, str] = field(default_factory=dict)  # ENV / ARG / LABEL
    argv: list[str] | None = None                     # CMD / ENTRYPOINT / RUN in exec form
    shell: bool = False                               # CMD / ENTRYPOINT / RUN in shell form

    def describe(self) -> str:
        return f"{self.keyword} {self.text}".strip()

    def error(self, message: str) -> BuildError:
        return BuildError(f"Dockerfile line {self.lineno}: {self.keyword}: {message}")


@dataclass
class Dockerfile:
    base: str
    steps: list[Instruction]    # everything after FROM, in order (ARG/LABEL included)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, instruction text) with continuations joined and comments dropped."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue  # blank, comment or parser directive
        if current and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not current:
            start = number
        if line.rstrip().endswith("\\"):
            current.append(line.rstrip()[:-1])
            continue
        current.append(line)
        out.append((start, " ".join(part.strip() for part in current if part.strip())))
        current = []
    if current:
        out.append((start, " ".join(part.strip() for part in current if part.strip())))
    return out


_VAR = re.compile(r"\\\$|\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
                  r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def substitute(text: str, values: dict[str, str]) -> str:
    """Docker's variable substitution: $V, ${V}, ${V:-default}, ${V:+alternative}; `\\$` is a literal $."""
    def repl(m: re.Match) -> str:
        if m.group(0) == "\\$":
            return "$"
        name = m.group("braced") or m.group("plain")
        value = values.get(name, "")
        op = m.group("op")
        if op == "-":
            return value if value else substitute(m.group("word"), values)
        if op == "+":
            return substitute(m.group("word"), values) if value else ""
        return value
    return _VAR.sub(repl, text)


def _split_words(ins: Instruction, text: str) -> list[str]:
    try:
        return shlex.split(text, posix=True)
    except ValueError as exc:
        raise ins.error(f"cannot parse {text!r}: {exc}") from None


def _json_form(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None  # Docker treats an invalid JSON array as shell form
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _pairs(ins: Instruction, text: str, allow_legacy: bool) -> dict[str, str]:
    words = _split_words(ins, text)
    if not words:
        raise ins.error("needs at least one NAME=value")
    if "=" not in words[0] and allow_legacy:
        # Legacy `ENV NAME value with spaces`: everything after the name, verbatim.
        parts = text.split(None, 1)
        if len(parts) < 2:
            raise ins.error(f"{parts[0]} needs a value (ENV NAME=value or ENV NAME value)")
        value = parts[1]
        unquoted = _split_words(ins, value)
        return {parts[0]: " ".join(unquoted) if unquoted else ""}
    out: dict[str, str] = {}
    for word in words:
        if "=" not in word:
            raise ins.error(f"{word!r} is not NAME=value")
        key, value = word.split("=", 1)
        if not key:
            raise ins.error(f"{word!r} has an empty name")
        out[key] = value
    return out


def _flags(ins: Instruction, words: list[str], allowed: tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    rest = list(words)
    while rest and rest[0].startswith("--"):
        word = rest.pop(0)
        name, _, value = word[2:].partition("=")
        if name == "from":
            raise ins.error("multi-stage builds (--from) are not supported: use one FROM")
        if name not in allowed:
            raise ins.error(f"the flag --{name} is not supported (supported: "
                            f"{', '.join('--' + a for a in allowed) or 'none'})")
        flags[name] = value
    return flags, rest


def parse(text: str) -> Dockerfile:
    """Parse a Dockerfile into its base and steps; BuildError names the line of anything unsupported.

    Substitution of ENV/ARG values happens at build time (builder.py), step by step, as Docker does."""
    lines = _logical_lines(text)
    base: str | None = None
    steps: list[Instruction] = []
    pre_from_args: dict[str, str] = {}
    for lineno, line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        ins = Instruction(lineno, keyword, rest)
        if keyword not in SUPPORTED:
            raise BuildError(f"Dockerfile line {lineno}: {keyword} is not supported by Lamina's image builder"
                             f"{_did_you_mean(keyword)} (supported: {', '.join(SUPPORTED)})")
        if keyword == "FROM":
            if base is not None:
                raise ins.error("multi-stage builds are not supported: use one FROM")
            base = _check_base(ins, substitute(rest, pre_from_args))
            continue
        if base is None:
            if keyword == "ARG":
                pre_from_args.update(_arg_pairs(ins))
                continue
            raise ins.error("the first instruction must be FROM (or ARG before FROM)")
        _parse_args(ins)
        steps.append(ins)
    if base is None:
        raise BuildError("the Dockerfile has no FROM line: start it with FROM public.ecr.aws/lambda/microvms:al2023 "
                         "or FROM lamina/base")
    return Dockerfile(base=base, steps=steps)


def _did_you_mean(keyword: str) -> str:
    # A typo (WROKDIR) deserves the likely fix; a real Docker instruction we do not support (HEALTHCHECK) gets none.
    if keyword in _DOCKER_ONLY:
        return ""
    close = difflib.get_close_matches(keyword, SUPPORTED, n=1, cutoff=0.7)
    return f" (a typo for {close[0]}?)" if close else ""


def _arg_pairs(ins: Instruction) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in _split_words(ins, ins.text):
        name, _, value = word.partition("=")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ins.error(f"{name!r} is not a valid ARG name")
        out[name] = value
    if not out:
        raise ins.error("needs a name")
    return out


def _check_base(ins: Instruction, text: str) -> str:
    words = _split_words(ins, text)
    words = [w for w in words if not w.startswith("--platform")]
    if len(words) == 3 and words[1].lower() == "as":
        words = words[:1]
    if len(words) != 1:
        raise ins.error(f"expected FROM <image> [AS <name>], got {text!r}")
    image = words[0]
    name = image.split("@", 1)[0]
    # strip a tag (a colon after the last slash)
    slash = name.rfind("/")
    colon = name.rfind(":")
    repo = name[:colon] if colon > slash else name
    if repo in BASE_IMAGES:
        return image
    raise ins.error(f"the base image {image!r} is not available: Lamina builds on the host's read-only base; "
                    f"use FROM public.ecr.aws/lambda/microvms:al2023 (or FROM lamina/base)")


def _parse_args(ins: Instruction) -> None:
    k = ins.keyword
    text = ins.text
    if k in ("COPY", "ADD"):
        form = _json_form(text)
        words = form if form is not None else _split_words(ins, text)
        ins.flags, ins.args = _flags(ins, words, ("chown", "chmod", "link"))
        if len(ins.args) < 2:
            raise ins.error("needs a source and a destination")
        if k == "ADD":
            for src in ins.args[:-1]:
                if re.match(r"^[a-z][a-z0-9+.-]*://", src) or src.startswith("git@"):
                    raise ins.error(f"remote sources ({src}) are not supported: download the file into the "
                                    f"code artifact and ADD or COPY it from there")
    elif k == "RUN":
        if re.search(r"<<-?\s*[\"']?[A-Za-z_]\w*", text) and not re.search(r"<<<", text):
            raise ins.error("heredocs (<<EOF) are not supported: put the script in a file, COPY it and RUN it")
        form = _json_form(text)
        if form is None and text.startswith("--"):
            raise ins.error(f"RUN flags are not supported ({text.split()[0]})")
        if form is not None:
            if not form:
                raise ins.error("an empty exec form")
            ins.argv = form
        else:
            if not text:
                raise ins.error("needs a command")
            ins.shell = True
    elif k in ("CMD", "ENTRYPOINT"):
        form = _json_form(text)
        if form is not None:
            ins.argv = form
        else:
            if not text:
                raise ins.error("needs a command")
            ins.shell = True
    elif k in ("ENV", "LABEL"):
        ins.pairs = _pairs(ins, text, allow_legacy=True)
    elif k == "ARG":
        ins.pairs = _arg_pairs(ins)
    elif k == "EXPOSE":
        ins.args = _split_words(ins, text)
        if not ins.args:
            raise ins.error("needs a port")
    elif k in ("WORKDIR", "USER") and not text:
        raise ins.error("needs a value")


def expose_ports(ins: Instruction, values: dict[str, str], protocol: str = "tcp") -> list[int]:
    """The TCP (or, with protocol="udp", UDP) ports of an EXPOSE line (`5000`, `5000/tcp`, `7000/udp`,
    `8000-8002`); a port without a protocol is TCP, as in Docker."""
    ports: list[int] = []
    for word in ins.args:
        spec = substitute(word, values)
        port, _, proto = spec.partition("/")
        if proto and proto.lower() not in ("tcp", "udp"):
            raise ins.error(f"unknown protocol in {spec!r}")
        low, _, high = port.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise ins.error(f"{spec!r} is not a port") from None
        if not (1 <= first <= last <= 65535):
            raise ins.error(f"{spec!r} is not a port between 1 and 65535")
        if (proto.lower() or "tcp") == protocol:
            ports.extend(range(first, last + 1))
    return ports


def final_argv(entrypoint: Instruction | None, cmd: Instruction | None) -> list[str]:
    """ENTRYPOINT and CMD combined as Docker does: exec ENTRYPOINT + CMD (exec, or sh -c for shell form);
    a shell-form ENTRYPOINT ignores CMD."""
    def argv(ins: Instruction) -> list[str]:
        return [*SHELL, ins.text] if ins.shell else list(ins.argv or [])
    if entrypoint is not None:
        if entrypoint.shell:
            return argv(entrypoint)
        return argv(entrypoint) + (argv(cmd) if cmd is not None else [])
    return argv(cmd) if cmd is not None else []


# -- package-manager lines --

PACKAGE_MANAGERS = ("dnf", "yum", "microdnf", "apt-get", "apt", "apk", "tdnf")
_PM_QUIET_SUBCOMMANDS = {"clean", "update", "makecache", "upgrade", "check-update", "autoremove"}
_PM_OPTIONS_WITH_VALUE = {"--setopt", "-c", "--config", "--installroot", "--releasever", "-o", "--option",
                          "--enablerepo", "--disablerepo", "--repo", "-t", "--target-release"}


@dataclass
class PackageRequest:
    manager: str
    subcommand: str
    packages: list[str]


def _segments(command: str) -> list[str] | None:
    """A RUN shell command split on top-level `&&` and `;`, or None when it uses other shell syntax
    (pipes, ||, redirections, subshells) that make its parts unsafe to drop one by one."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return None
    segments: list[list[str]] = [[]]
    for tok in tokens:
        if tok in ("&&", ";"):
            segments.append([])
        elif tok and all(c in ";&|()<>" for c in tok):
            return None
        else:
            segments[-1].append(tok)
    return [shlex.join(s) for s in segments if s]


def package_request(words: list[str]) -> PackageRequest | None:
    """The package-manager call `words` makes (`dnf install -y a b` -> install [a, b]), or None."""
    if not words:
        return None
    start = 0
    while start < len(words) and ("=" in words[start] and not words[start].startswith("-")):
        start += 1  # leading VAR=value assignments (DEBIAN_FRONTEND=noninteractive apt-get ...)
    if start < len(words) and words[start] == "sudo":
        start += 1
    if start >= len(words):
        return None
    manager = words[start].rsplit("/", 1)[-1]
    if manager not in PACKAGE_MANAGERS:
        return None
    sub = ""
    packages: list[str] = []
    skip = False
    for word in words[start + 1:]:
        if skip:
            skip = False
            continue
        if word.startswith("-"):
            if word in _PM_OPTIONS_WITH_VALUE:
                skip = True
            continue
        if not sub:
            sub = word
            continue
        packages.append(word)
    if manager == "apk" and sub == "add":
        sub = "install"
    return PackageRequest(manager, sub, packages)


def split_run(command: str) -> tuple[list[PackageRequest], str | None, str | None]:
    """A shell-form RUN line as (package-manager calls, the rest of the command joined with `&&`,
    why it cannot be split). The rest is None when nothing remains."""
    segments = _segments(command)
    if segments is None:
        words = command.split()
        if any(w.rsplit("/", 1)[-1] in PACKAGE_MANAGERS for w in words):
            return [], command, "it runs a package manager inside shell syntax Lamina does not split " \
                                "(pipes, ||, redirections); put the package-manager call on a RUN line of its own"
        return [], command, None
    requests: list[PackageRequest] = []
    rest: list[str] = []
    for seg in segments:
        req = package_request(shlex.split(seg))
        if req is not None:
            requests.append(req)
        else:
            rest.append(seg)
    if not requests:
        return [], command, None
    return requests, (" && ".join(rest) if rest else None), None


def quiet_subcommand(req: PackageRequest) -> bool:
    """Subcommands that change nothing a read-only base could lack (clean, update, makecache, ...)."""
    return req.subcommand in _PM_QUIET_SUBCOMMANDS
