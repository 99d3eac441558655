import base64
import io
import os
import stat
import zipfile

import pytest

from lamina.functions.code import decode_zip, unpack
from lamina.functions.errors import AwsError
from lamina.store.blobs import CodeStore


def make_zip(entries: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (data, mode) in entries.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFREG | mode) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def test_unpack_keeps_exec_bit_and_makes_files_read_only(tmp_path):
    store = CodeStore(tmp_path)
    data = make_zip({"bootstrap": (b"#!/bin/sh\n", 0o755), "pkg/mod.py": (b"x = 1\n", 0o644)})
    sha = store.put_zip(decode_zip(base64.b64encode(data).decode()))
    root = unpack(store, sha)
    assert os.access(root / "bootstrap", os.X_OK)
    assert not os.access(root / "pkg" / "mod.py", os.X_OK)
    assert stat.S_IMODE((root / "pkg" / "mod.py").stat().st_mode) == 0o444
    assert (root / "pkg" / "mod.py").read_text() == "x = 1\n"
    assert unpack(store, sha) == root  # idempotent
    store.collect(set())
    assert not root.exists() and not store.zip_path(sha).exists()


@pytest.mark.parametrize("name", ["../evil.py", "/etc/evil", "a/../../evil"])
def test_zip_slip_is_rejected(name):
    data = make_zip({name: (b"x", 0o644)})
    with pytest.raises(AwsError) as err:
        decode_zip(base64.b64encode(data).decode())
    assert err.value.code == "InvalidParameterValueException"


@pytest.mark.parametrize("value", ["not base64!!", base64.b64encode(b"not a zip").decode(), 12])
def test_bad_packages(value):
    with pytest.raises(AwsError) as err:
        decode_zip(value)
    assert err.value.status == 400
