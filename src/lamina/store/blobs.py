"""Content-addressed storage of code packages: data/code/<sha256>.zip, unpacked at data/tasks/<sha256>/."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path


class CodeStore:
    def __init__(self, root: Path) -> None:
        self.zips = root / "code"
        self.tasks = root / "tasks"
        self.zips.mkdir(parents=True, exist_ok=True)
        self.tasks.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def zip_path(self, sha: str) -> Path:
        return self.zips / f"{sha}.zip"

    def task_dir(self, sha: str) -> Path:
        return self.tasks / sha

    def put_zip(self, data: bytes) -> str:
        sha = self.digest(data)
        path = self.zip_path(sha)
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=self.zips, suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        return sha

    def read_zip(self, sha: str) -> bytes:
        return self.zip_path(sha).read_bytes()

    def staging_dir(self) -> Path:
        """A fresh directory next to tasks/, to unpack into before an atomic rename."""
        return Path(tempfile.mkdtemp(dir=self.tasks, prefix=".unpack-"))

    def commit_task_dir(self, staging: Path, sha: str) -> Path:
        final = self.task_dir(sha)
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.replace(staging, final)
        return final

    def collect(self, in_use: set[str]) -> None:
        """Remove packages no function refers to any more."""
        for path in self.zips.glob("*.zip"):
            if path.stem not in in_use:
                path.unlink(missing_ok=True)
        for path in self.tasks.iterdir():
            if path.name not in in_use:
                _rmtree_writable(path)


def _rmtree_writable(path: Path) -> None:
    # Unpacked code is made read-only; restore write permission on directories so rmtree works.
    def onerror(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    shutil.rmtree(path, onerror=onerror)
