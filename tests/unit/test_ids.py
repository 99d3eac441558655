"""Pooled request and trace ids (dispatch/ids.py): well-formed version 4 UUIDs and X-Ray roots, no repeats across
pool refills, and a forked child does not repeat its parent's next ids."""

from __future__ import annotations

import os
import re
import uuid

from lamina.dispatch import ids

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_request_ids_are_uuid4_and_unique_across_refills():
    got = [ids.request_id() for _ in range(3 * ids._POOL_BYTES // 16)]  # several refills of the pool
    assert len(set(got)) == len(got)
    for rid in got:
        assert UUID4.match(rid), rid
        assert uuid.UUID(rid).version == 4 and str(uuid.UUID(rid)) == rid


def test_trace_ids_have_the_xray_root_shape():
    for _ in range(1000):
        assert re.match(r"^Root=1-[0-9a-f]{8}-[0-9a-f]{24}$", ids.trace_id())
    ids.request_id()  # mixing the two still gives well-formed ids (odd offsets into the pool)
    assert UUID4.match(ids.request_id())


def test_a_forked_child_does_not_repeat_the_parents_ids():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, ",".join(ids.request_id() for _ in range(4)).encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 4096).decode().split(",")
    os.close(r)
    os.waitpid(pid, 0)
    mine = [ids.request_id() for _ in range(4)]
    assert len(child) == 4 and not set(child) & set(mine)
