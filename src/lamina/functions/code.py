"""Code packages: decode, check and unpack a function's .zip safely."""

from __future__ import annotations

import base64
import binascii
import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

from lamina.functions.errors import AwsError
from lamina.store.blobs import CodeStore

MAX_ZIPPED = 50 * 1024 * 1024           # AWS's limit for a direct upload
MAX_UNZIPPED = 250 * 1024 * 1024        # AWS's limit for the unpacked package
MAX_CREATE_REQUEST = 70_167_211         # AWS's limit for a CreateFunction request (the base64 zip and the rest)


def decode_zip(value: object, operation: str = "CreateFunction") -> bytes:
    """Code.ZipFile / ZipFile / Content.ZipFile arrive base64-encoded inside the JSON body."""
    if not isinstance(value, str):
        raise AwsError("InvalidParameterValueException", "ZipFile must be a base64-encoded string.")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AwsError("InvalidParameterValueException",
                       "Could not decode ZipFile: it is not valid base64.") from None
    if len(data) > MAX_ZIPPED:
        raise AwsError("RequestEntityTooLargeException", f"Zipped size must be smaller than {MAX_ZIPPED} bytes", 413)
    check_zip(data)
    return data


def check_zip(data: bytes) -> None:
    """Reject what AWS rejects: not a zip, unsafe paths, too large unpacked."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            total = 0
            for info in zf.infolist():
                _safe_name(info.filename)
                total += info.file_size
            if zf.testzip() is not None:
                raise zipfile.BadZipFile("corrupt member")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, NotImplementedError):
        raise AwsError("InvalidParameterValueException",
                       "Could not unzip uploaded file. Please check your file, then try to upload again.") from None
    if total > MAX_UNZIPPED:
        raise AwsError("InvalidParameterValueException",
                       f"Unzipped size must be smaller than {MAX_UNZIPPED} bytes")


def _safe_name(name: str) -> str:
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts or "\x00" in name:
        raise zipfile.BadZipFile(f"unsafe path {name!r}")
    return name


def unpack(store: CodeStore, sha: str) -> Path:
    """Unpack the stored zip once into data/tasks/<sha>/ (read-only files, exec bits kept)."""
    final = store.task_dir(sha)
    if final.exists():
        return final
    staging = store.staging_dir()
    _extract(store.zip_path(sha), staging)
    _seal(staging)
    return store.commit_task_dir(staging, sha)


def unpack_layers(store: CodeStore, shas: list[str]) -> Path | None:
    """A function's layers unpacked once, in order, into one directory (data/opt/<key>/, shown at /opt): a later
    layer's file replaces an earlier one's, as on AWS. None without layers."""
    if not shas:
        return None
    key = store.opt_key(shas)
    final = store.opt_dir(key)
    if final.exists():
        return final
    staging = store.opt_staging_dir()
    for sha in shas:
        _extract(store.zip_path(sha), staging)
    _seal(staging)
    return store.commit_opt_dir(staging, key)


def layers_dir(store: CodeStore, shas: list[str]) -> Path | None:
    """Where unpack_layers puts (or has put) these layers."""
    return store.opt_dir(store.opt_key(shas)) if shas else None


def _extract(zip_path: Path, staging: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = staging / _safe_name(info.filename)
            mode = (info.external_attr >> 16) & 0o7777
            kind = (info.external_attr >> 16) & 0o170000
            if info.is_dir():
                if target.is_symlink() or target.is_file():
                    target.unlink()
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.is_file():
                target.unlink()  # an earlier layer's file: this one replaces it
            elif target.is_dir():
                shutil.rmtree(target)
            if kind == stat.S_IFLNK:
                link = zf.read(info).decode()
                if link.startswith("/") or ".." in Path(link).parts:
                    continue  # a link out of the package is dropped, as it could expose the host
                os.symlink(link, target)
                continue
            with zf.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            # Everyone may read; exec bits as packaged (bootstrap scripts need them); nobody writes.
            os.chmod(target, 0o444 | (mode & 0o111))


def _seal(staging: Path) -> None:
    for dirpath, _dirs, _files in os.walk(staging):
        os.chmod(dirpath, 0o755)


def code_sha256_b64(data: bytes) -> str:
    import hashlib

    return base64.b64encode(hashlib.sha256(data).digest()).decode()
