import io
import os
import stat
import time
import zipfile
from pathlib import Path

import pytest

from lamina.cli.packaging import PackagingError, guess_handler, zip_directory


def make_tree(root: Path) -> None:
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("def handler(event, context):\n    return event\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "util.py").write_text("X = 1\n")
    (root / "bootstrap").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "bootstrap", 0o755)
    (root / "app.py").chmod(0o644)


def entries(data: bytes) -> list[zipfile.ZipInfo]:
    return zipfile.ZipFile(io.BytesIO(data)).infolist()


def test_zip_is_deterministic_across_mtimes_and_creation_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a)
    first = zip_directory(a)
    # Same content written in another order, with other timestamps.
    b.mkdir()
    (b / "bootstrap").write_text("#!/bin/sh\necho hi\n")
    os.chmod(b / "bootstrap", 0o755)
    (b / "pkg").mkdir()
    (b / "pkg" / "util.py").write_text("X = 1\n")
    (b / "pkg" / "__init__.py").write_text("")
    (b / "app.py").write_text("def handler(event, context):\n    return event\n")
    (b / "app.py").chmod(0o644)
    later = time.time() + 86400
    for p in b.rglob("*"):
        os.utime(p, (later, later))
    assert zip_directory(b) == first
    assert zip_directory(a) == first

    infos = entries(first)
    names = [i.filename for i in infos]
    assert names == sorted(names) == ["app.py", "bootstrap", "pkg/__init__.py", "pkg/util.py"]
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_entry_order_does_not_follow_directory_listing_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path)
    first = zip_directory(tmp_path)
    real_walk = os.walk

    def reversed_walk(top, *args, **kwargs):  # type: ignore[no-untyped-def]
        for dirpath, dirnames, filenames in real_walk(top, *args, **kwargs):
            dirnames.reverse()  # in place, so the caller's pruning still reaches os.walk
            yield dirpath, dirnames, filenames[::-1]

    monkeypatch.setattr("lamina.cli.packaging.os.walk", reversed_walk)
    assert zip_directory(tmp_path) == first


def test_zip_content_changes_when_a_file_changes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    before = zip_directory(tmp_path)
    (tmp_path / "pkg" / "util.py").write_text("X = 2\n")
    after = zip_directory(tmp_path)
    assert before != after
    assert zipfile.ZipFile(io.BytesIO(after)).read("pkg/util.py") == b"X = 2\n"


def test_executable_bit_is_kept(tmp_path: Path) -> None:
    make_tree(tmp_path)
    by_name = {i.filename: i for i in entries(zip_directory(tmp_path))}
    boot_mode = by_name["bootstrap"].external_attr >> 16
    app_mode = by_name["app.py"].external_attr >> 16
    assert stat.S_ISREG(boot_mode)
    assert stat.S_IMODE(boot_mode) == 0o755
    assert stat.S_IMODE(app_mode) == 0o644
    # Extracting with the mode applied gives back a runnable file.
    out = tmp_path / "out"
    with zipfile.ZipFile(io.BytesIO(zip_directory(tmp_path))) as zf:
        path = Path(zf.extract("bootstrap", out))
        os.chmod(path, zf.getinfo("bootstrap").external_attr >> 16)
    assert os.access(path, os.X_OK)


def test_caches_and_git_are_skipped(tmp_path: Path) -> None:
    make_tree(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "stray.pyc").write_bytes(b"\0")
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".gitignore").write_text("*.pyc\n")  # a dotfile that is not .git stays
    names = [i.filename for i in entries(zip_directory(tmp_path))]
    assert names == [".gitignore", "app.py", "bootstrap", "pkg/__init__.py", "pkg/util.py"]


def test_zip_refuses_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(PackagingError, match="not a directory"):
        zip_directory(tmp_path / "nope")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    with pytest.raises(PackagingError, match="no files"):
        zip_directory(tmp_path)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["lambda_function.py", "app.py", "main.py"], "lambda_function.lambda_handler"),
        (["app.py", "main.py"], "app.handler"),
        (["main.py", "util.py"], "main.handler"),
    ],
)
def test_guess_handler_prefers_in_order(tmp_path: Path, files: list[str], expected: str) -> None:
    for name in files:
        (tmp_path / name).write_text("")
    assert guess_handler(tmp_path) == expected


def test_guess_handler_asks_for_handler_when_nothing_matches(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("")
    (tmp_path / "app.py").mkdir()  # a directory named like the file does not count
    with pytest.raises(PackagingError, match="--handler"):
        guess_handler(tmp_path)
