"""README.md's commands, run as a newcomer would paste them, against a real `lamina serve`.

A fenced block is run when the line right before its opening fence is a marker:

    <!-- test: GROUP [root] [ports=5353,7777] -->      the block is commands (```sh: bash; ```python: python)
    <!-- test: GROUP output -->                         the block is what the previous command block prints

Every group is one test. Its command blocks run in README order in one `bash -euo pipefail` (variables carry from
block to block within the group), in a working directory shared by all groups (files the README makes stay for the
next section) that holds the repository's `src`, `.venv` and `.venv-awscli`, with the venv's `bin` first on PATH and
LAMINA_ENDPOINT set. The groups share one server, started for this module; before a group runs, every group above
it in the README runs first if it has not yet, as a reader following the README from the top would have. Any
`127.0.0.1:8800` / `localhost:8800` in a block is the test server's address, and each port listed in `ports=` is
replaced by a free one (so a README port another program holds does not fail the test).

An output block's lines must appear in that order in the command block's stdout; `...` inside a line matches
anything (ids, times). Options: `root` runs the group only where the server has the linux sandbox (MicroVMs).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import AWS_CLI, REPO_ROOT, LaminaServer, health

README = REPO_ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*test:\s*(?P<group>[\w-]+)(?P<options>(?:\s+[\w=,.-]+)*)\s*-->\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[\w-]*)")
SERVER_PORT = "8800"
BLOCK_SEPARATOR = "@@README-BLOCK {}@@"
GROUP_TIMEOUT_S = 900


@dataclass
class Block:
    line: int  # README line of the opening fence
    language: str  # sh or python
    text: str
    expected: list[str] = field(default_factory=list)  # lines of the output block that follows, if any


@dataclass
class Group:
    name: str
    blocks: list[Block] = field(default_factory=list)
    root: bool = False
    ports: list[int] = field(default_factory=list)


def parse(text: str) -> list[Group]:
    """The marked blocks of a Markdown document, grouped, in document order."""
    lines = text.splitlines()
    groups: dict[str, Group] = {}
    i = 0
    while i < len(lines):
        m = MARKER.match(lines[i].strip())
        if not m:
            if (unmarked := FENCE.match(lines[i])) is not None:  # skip it whole: what it shows is not a marker
                i += 1
                while i < len(lines) and not lines[i].strip().startswith(unmarked.group("fence")):
                    i += 1
            i += 1
            continue
        fence = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
        if fence is None:
            raise ValueError(f"README.md:{i + 1}: a test marker must be followed directly by a fenced block")
        indent, close = fence.group("indent"), fence.group("fence")
        body: list[str] = []
        j = i + 2
        while j < len(lines) and not lines[j].strip().startswith(close):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        if j == len(lines):
            raise ValueError(f"README.md:{i + 2}: the fenced block is not closed")
        options = m.group("options").split()
        group = groups.setdefault(m.group("group"), Group(m.group("group")))
        if "output" in options:
            if not group.blocks or group.blocks[-1].expected:
                raise ValueError(f"README.md:{i + 1}: an output block must follow a command block of its group")
            group.blocks[-1].expected = [line for line in body if line.strip()]
        else:
            language = fence.group("info") or "sh"
            if language not in ("sh", "bash", "shell", "console", "python"):
                raise ValueError(f"README.md:{i + 1}: cannot run a ```{language} block")
            group.blocks.append(Block(i + 2, "python" if language == "python" else "sh", "\n".join(body)))
            for option in options:
                if option == "root":
                    group.root = True
                elif option.startswith("ports="):
                    group.ports += [int(p) for p in option[len("ports="):].split(",") if p]
                else:
                    raise ValueError(f"README.md:{i + 1}: unknown test marker option {option!r}")
        i = j + 1
    return list(groups.values())


def script(group: Group, port: int, ports: dict[int, int]) -> str:
    """The group's blocks as one bash script; each block's stdout is preceded by a separator line."""
    parts = ["set -euo pipefail",
             'trap \'echo "README.md:$README_LINE: exit status $? from: $BASH_COMMAND" >&2\' ERR']
    for block in group.blocks:
        text = localize(block.text, port, ports)
        # On a line of its own even when the block before printed no final newline (curl -s).
        parts.append(f"README_LINE={block.line}; printf '\\n%s\\n' '{BLOCK_SEPARATOR.format(block.line)}'")
        if block.language == "python":
            parts.append(f"python - <<'README_PYTHON'\n{text}\nREADME_PYTHON")
        else:
            parts.append(text)
    return "\n".join(parts) + "\n"


def localize(text: str, port: int, ports: dict[int, int]) -> str:
    text = re.sub(rf"\b(127\.0\.0\.1|localhost):{SERVER_PORT}\b", rf"\g<1>:{port}", text)
    for old, new in ports.items():
        text = re.sub(rf"(?<![\d.]){old}(?!\.?\d)", str(new), text)  # a port, not part of a number or address
    return text


def expected_pattern(line: str) -> re.Pattern[str]:
    """A whole output line (leading and trailing blanks aside), `...` matching anything."""
    return re.compile(".*".join(re.escape(piece) for piece in line.strip().split("...")))


def check_output(block: Block, stdout: str, port: int, ports: dict[int, int]) -> None:
    lines = [line.strip() for line in stdout.splitlines()]
    at = 0
    for want in block.expected:
        pattern = expected_pattern(localize(want, port, ports))
        while at < len(lines) and not pattern.fullmatch(lines[at]):
            at += 1
        assert at < len(lines), (f"README.md:{block.line}: expected a line like {want!r} (after the ones before it) "
                                 f"in the output:\n{stdout}")
        at += 1


def free_ports(count: int) -> list[int]:
    """Ports free for both TCP and UDP on 127.0.0.1 now."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        if port not in found:
            found.append(port)
    return found


GROUPS = parse(README.read_text())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    server = LaminaServer(data_dir=tmp_path_factory.mktemp("readme") / "data",
                          log_path=tmp_path_factory.mktemp("readme-log") / "server.log")
    server.start(timeout=60)
    yield server
    server.stop()
    server.kill_leftovers()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory like a fresh clone's root, for the parts of it the README uses."""
    assert AWS_CLI.exists(), f"{AWS_CLI} is missing: `make awscli` (make test does)"
    work = tmp_path_factory.mktemp("readme-work")
    venv = Path(sys.executable).parent.parent
    for name, target in (("src", REPO_ROOT / "src"), (".venv", venv), (".venv-awscli", AWS_CLI.parent.parent)):
        (work / name).symlink_to(target)
    return work


@pytest.fixture(scope="module")
def run_group(server: LaminaServer, workdir: Path):
    done: dict[str, str] = {}  # group -> failure ("" when it passed)
    sandbox = health(server.endpoint).get("sandbox")

    def run(group: Group) -> None:
        if group.name in done:
            assert not done[group.name], done[group.name]
            return
        done[group.name] = "it failed when an earlier test ran it first"
        ports = dict(zip(group.ports, free_ports(len(group.ports)), strict=True))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMINA_", "AWS_"))}
        bins = [str(workdir / ".venv" / "bin"), str(workdir / ".venv-awscli" / "bin")]
        env.update(PATH=os.pathsep.join([*bins, env.get("PATH", "/usr/bin:/bin")]), HOME=str(workdir),
                   LAMINA_ENDPOINT=server.endpoint, NO_COLOR="1", TERM="dumb", COLUMNS="200",
                   PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(["bash", "-c", script(group, server.port, ports)], capture_output=True, text=True,
                              cwd=workdir, env=env, timeout=GROUP_TIMEOUT_S, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (f"README group {group.name!r} failed (exit {proc.returncode}):\n"
                                      f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}")
        outputs = proc.stdout.split("\n")
        by_block: dict[int, list[str]] = {}
        current: list[str] = []
        for line in outputs:
            if (m := re.fullmatch(r"@@README-BLOCK (\d+)@@", line)):
                current = by_block.setdefault(int(m.group(1)), [])
            else:
                current.append(line)
        for block in group.blocks:
            if block.expected:
                check_output(block, "\n".join(by_block.get(block.line, [])), server.port, ports)
        done[group.name] = ""

    def runnable(group: Group) -> bool:
        return not group.root or sandbox == "linux"

    def run_with_earlier(group: Group) -> None:
        for earlier in GROUPS[:GROUPS.index(group)]:
            if runnable(earlier):
                run(earlier)
        if not runnable(group):
            pytest.skip("needs root: MicroVMs in the linux sandbox")
        run(group)

    return run_with_earlier


def test_markers_blocks_and_outputs_are_parsed() -> None:
    doc = """
<!-- test: one -->
```sh
echo a 127.0.0.1:8800
```
<!-- test: one output -->
```
a ...
```
```sh
echo not marked
```
- a list item
  <!-- test: two root ports=5353,7777 -->
  ```python
  print(5353)
  ```
<!-- test: one -->
```sh
echo b
```
"""
    one, two = parse(doc)
    assert [b.text for b in one.blocks] == ["echo a 127.0.0.1:8800", "echo b"]
    assert one.blocks[0].expected == ["a ..."] and not one.root
    assert (two.root, two.ports, two.blocks[0].language, two.blocks[0].text) == (True, [5353, 7777], "python",
                                                                                  "print(5353)")
    assert localize("curl 127.0.0.1:8800/x -p 5353 15353 5353.1", 4242, {5353: 6000}) == \
        "curl 127.0.0.1:4242/x -p 6000 15353 5353.1"
    block = Block(1, "sh", "", expected=["b...", "{\"n\": ...}"])
    check_output(block, "a\n  b1  \nx\n{\"n\": 1}\n", 1, {})
    with pytest.raises(AssertionError):
        check_output(block, "{\"n\": 1}\nb1\n", 1, {})  # out of order
    with pytest.raises(ValueError, match="followed directly by a fenced block"):
        parse("<!-- test: x -->\ntext\n")
    # A marker shown inside an unmarked fenced block (documentation about markers) is not one.
    assert parse("````\n<!-- test: shown -->\n```sh\necho no\n```\n````\n") == []


def test_readme_has_tested_groups() -> None:
    assert GROUPS, "README.md has no <!-- test: ... --> blocks"
    for group in GROUPS:
        assert group.blocks, f"README group {group.name!r} has output blocks only"
    assert shutil.which("bash"), "bash runs the README's blocks"


@pytest.mark.timeout(GROUP_TIMEOUT_S * 3)
@pytest.mark.parametrize("group", GROUPS, ids=[g.name for g in GROUPS])
def test_readme_group(group: Group, run_group) -> None:
    run_group(group)
