"""`lamina serve --example` (what `make run` starts) prints ways to invoke the example function; each line must
work as pasted into a fresh shell: no AWS configuration, no credentials, no region, any working directory."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import REPO_ROOT, LaminaServer

pytestmark = pytest.mark.timeout(180)

AWS_VENV_BIN = REPO_ROOT / ".venv-awscli" / "bin"


def _try_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Try the example function"))
    block = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        block.append(line.strip())
    return block


def test_banner_lines_run_as_pasted(tmp_path: Path) -> None:
    assert (AWS_VENV_BIN / "aws").exists(), f"{AWS_VENV_BIN / 'aws'} is missing: `make awscli` (make test does it)"
    # The AWS CLI found on PATH, as for a user who installed it; the banner names it by its full path.
    server = LaminaServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log", extra_args=["--example"],
                          extra_env={"PATH": f"{AWS_VENV_BIN}:{os.environ['PATH']}"})
    server.start(timeout=60)
    try:
        lines = _try_lines(server.output())
        assert len(lines) == 3, lines
        lamina, aws, boto3 = lines
        assert "invoke hello" in lamina and "aws lambda invoke" in aws and "import boto3" in boto3, lines
        # A fresh shell: nothing from this session's environment, no ~/.aws, a directory of its own.
        home = tmp_path / "home"
        home.mkdir()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
        outputs = []
        for line in lines:
            proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env, cwd=home,
                                  timeout=90)
            assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
            outputs.append(proc.stdout)
        assert json.loads(outputs[0])["message"] == "Hello, Lamina!", outputs[0]
        # aws prints the invoke's metadata, then `cat out.json` the result
        assert '"StatusCode": 200' in outputs[1] and '"message": "Hello, world!"' in outputs[1], outputs[1]
        assert "Hello, world!" in outputs[2], outputs[2]
    finally:
        server.stop()
        server.kill_leftovers()
