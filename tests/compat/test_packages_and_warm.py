"""A real app shape: a handler importing a third-party package shipped in its zip; warm reuse of init."""

from __future__ import annotations

import jmespath
import pytest

from helpers import installed_files, invoke, make_zip, probe_code

pytestmark = pytest.mark.timeout(90)

MARK = "LAMINA_BUNDLED_COPY = True\n"


def _vendored_jmespath() -> dict[str, bytes]:
    """The test venv's jmespath package, copied to the zip root, with a marker in the copy."""
    files = installed_files("jmespath")
    files["jmespath/__init__.py"] += b"\n" + MARK.encode()
    return files


HANDLER = """
import jmespath

EXPR = jmespath.compile("people[?age > `30`].name | sort(@)")


def handler(event, context):
    return {
        "names": EXPR.search(event),
        "first": jmespath.search("people[0].name", event),
        "bundled": getattr(jmespath, "LAMINA_BUNDLED_COPY", False),
        "file": jmespath.__file__,
    }
"""


def test_handler_imports_package_from_its_zip(lambda_client, functions):
    files = _vendored_jmespath()
    files["app.py"] = HANDLER
    name = functions(make_zip(files))
    event = {"people": [{"name": "zoe", "age": 40}, {"name": "al", "age": 20}, {"name": "bo", "age": 31}]}
    resp, body = invoke(lambda_client, name, event)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert body["names"] == ["bo", "zoe"]
    assert body["first"] == "zoe"
    # the zip's copy was imported, not the jmespath the server's own interpreter has installed
    assert body["bundled"] is True, body["file"]
    assert body["file"] != jmespath.__file__


def test_handler_imports_sibling_modules_and_subpackages(lambda_client, functions):
    name = functions(make_zip({
        "app.py": "from lib.util import double\nimport helper\n\n"
                  "def handler(event, context):\n    return double(helper.VALUE)\n",
        "helper.py": "VALUE = 21\n",
        "lib/__init__.py": "",
        "lib/util.py": "def double(x):\n    return 2 * x\n",
    }))
    resp, body = invoke(lambda_client, name, {})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert body == 42


def test_handler_in_a_subdirectory(lambda_client, functions):
    code = {"src/__init__.py": "", "src/main.py": "def run(event, context):\n    return 'sub'\n"}
    name = functions(make_zip(code), handler="src/main.run")
    resp, body = invoke(lambda_client, name, {})
    assert "FunctionError" not in resp, body
    assert body == "sub"


def test_init_runs_once_across_warm_invokes(lambda_client, functions):
    name = functions(probe_code())
    results = []
    for i in range(10):
        resp, body = invoke(lambda_client, name, {"i": i})
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
        assert body["echo"] == {"i": i}
        results.append(body)
    assert {r["init_count"] for r in results} == {1}
    assert len({r["pid"] for r in results}) == 1, [r["pid"] for r in results]
    assert len({r["env_id"] for r in results}) == 1, "sequential invokes did not reuse the warm environment"
    assert [r["calls"] for r in results] == list(range(1, 11))
    assert len({r["request_id"] for r in results}) == 10
