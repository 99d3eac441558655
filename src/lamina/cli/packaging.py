"""Turn a function's source directory into the zip that CreateFunction / UpdateFunctionCode take."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

# Entries that only ever bloat a deployment (and change on every run, breaking CodeSha256 equality).
SKIP_DIRS = frozenset({"__pycache__", ".git"})
SKIP_SUFFIXES = (".pyc",)
# The earliest time a zip can record; a fixed stamp keeps the archive (and its CodeSha256)
# identical for identical sources, so redeploying unchanged code is recognisable.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
# Conventional entry points, in the order we look for them.
HANDLER_CANDIDATES = (
    ("lambda_function.py", "lambda_function.lambda_handler"),
    ("app.py", "app.handler"),
    ("main.py", "main.handler"),
)


class PackagingError(Exception):
    """The directory cannot be packaged; the message says what to do."""


def iter_files(root: Path) -> list[tuple[str, Path]]:
    """(archive name, path) for every file to package under root, sorted by archive name."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk descending into skipped directories at all.
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(SKIP_SUFFIXES):
                continue
            path = Path(dirpath, name)
            if not path.is_file():  # broken symlinks, sockets, fifos
                continue
            found.append((path.relative_to(root).as_posix(), path))
    found.sort()
    return found


def zip_directory(directory: str | os.PathLike[str]) -> bytes:
    """Zip a directory deterministically: sorted entries, fixed timestamps, file modes kept."""
    root = Path(directory)
    if not root.is_dir():
        raise PackagingError(f"{root} is not a directory")
    files = iter_files(root)
    if not files:
        raise PackagingError(f"{root} has no files to deploy")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, path in files:
            st = path.stat()
            info = zipfile.ZipInfo(arcname, date_time=FIXED_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Unix "made by" plus the mode in the high 16 bits is what unzip tools (and Lambda)
            # read to restore the executable bit, which bootstrap scripts and binaries need.
            info.create_system = 3
            info.external_attr = st.st_mode << 16
            info.file_size = st.st_size  # lets zipfile pick zip64 up front for big files
            with open(path, "rb") as src, zf.open(info, "w") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return buf.getvalue()


def guess_handler(directory: str | os.PathLike[str]) -> str:
    """The handler for a directory laid out in one of the usual ways, or PackagingError."""
    root = Path(directory)
    for filename, handler in HANDLER_CANDIDATES:
        if (root / filename).is_file():
            return handler
    names = ", ".join(f for f, _ in HANDLER_CANDIDATES)
    raise PackagingError(
        f"cannot guess the handler in {root}: none of {names} is there — "
        "pass --handler MODULE.FUNCTION (e.g. --handler app.handler)"
    )
