"""Content-addressed storage of code packages: data/code/<sha256>.zip, unpacked at data/tasks/<sha256>/; a function's
layers unpacked together (in order) at data/opt/<key>/, the key naming the packages and their order."""

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
        self.opts = root / "opt"
        self.zips.mkdir(parents=True, exist_ok=True)
        self.tasks.mkdir(parents=True, exist_ok=True)
        self.opts.mkdir(parents=True, exist_ok=True)

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

    @staticmethod
    def opt_key(shas: list[str]) -> str:
        """The name of the directory holding these packages unpacked one over the other, in this order."""
        return hashlib.sha256(",".join(shas).encode()).hexdigest()

    def opt_dir(self, key: str) -> Path:
        return self.opts / key

    def read_zip(self, sha: str) -> bytes:
        return self.zip_path(sha).read_bytes()

    def staging_dir(self) -> Path:
        """A fresh directory next to tasks/, to unpack into before an atomic rename."""
        return Path(tempfile.mkdtemp(dir=self.tasks, prefix=".unpack-"))

    def commit_task_dir(self, staging: Path, sha: str) -> Path:
        return self._commit(staging, self.task_dir(sha))

    def opt_staging_dir(self) -> Path:
        return Path(tempfile.mkdtemp(dir=self.opts, prefix=".unpack-"))

    def commit_opt_dir(self, staging: Path, key: str) -> Path:
        return self._commit(staging, self.opt_dir(key))

    @staticmethod
    def _commit(staging: Path, final: Path) -> Path:
        if final.exists():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            os.replace(staging, final)
        return final

    def collect(self, in_use: set[str], opts_in_use: set[str] | None = None) -> None:
        """Remove packages no function or layer refers to any more, and /opt directories no function uses."""
        for path in self.zips.glob("*.zip"):
            if path.stem not in in_use:
                path.unlink(missing_ok=True)
        for path in self.tasks.iterdir():
            if path.name not in in_use:
                _rmtree_writable(path)
        if opts_in_use is not None:
            for path in self.opts.iterdir():
                if path.name not in opts_in_use:
                    _rmtree_writable(path)


def _rmtree_writable(path: Path) -> None:
    # Unpacked code is made read-only; restore write permission on directories so rmtree works.
    def onerror(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    shutil.rmtree(path, onerror=onerror)
