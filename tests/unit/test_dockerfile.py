"""The Dockerfile subset parser (lamina.microvm.dockerfile) and the builder's package-line check."""

from __future__ import annotations

import pytest

from lamina.microvm import dockerfile
from lamina.microvm.builder import base_provides
from lamina.microvm.dockerfile import final_argv, parse, split_run, substitute
from lamina.microvm.engine import BuildError, BuiltImage, Hooks, ImageConfig

FLASK = """\
FROM public.ecr.aws/lambda/microvms:al2023-minimal

RUN dnf install -y python3 python3-pip

WORKDIR /app
COPY requirements.txt .
RUN pip3 install -r requirements.txt
COPY app.py .

EXPOSE 5000
CMD ["gunicorn", "--bind", "0.0.0.0:5000", "app:app"]
"""


def test_the_launch_articles_flask_dockerfile_parses() -> None:
    df = parse(FLASK)
    assert df.base == "public.ecr.aws/lambda/microvms:al2023-minimal"
    assert [s.keyword for s in df.steps] == ["RUN", "WORKDIR", "COPY", "RUN", "COPY", "EXPOSE", "CMD"]
    assert [s.lineno for s in df.steps] == [3, 5, 6, 7, 8, 10, 11]
    cmd = df.steps[-1]
    assert cmd.argv == ["gunicorn", "--bind", "0.0.0.0:5000", "app:app"] and not cmd.shell
    assert df.steps[2].args == ["requirements.txt", "."]
    assert dockerfile.expose_ports(df.steps[5], {}) == [5000]


def test_continuations_and_comments() -> None:
    df = parse("# a comment\nFROM lamina/base\nRUN echo a \\\n  # dropped comment\n  && echo b \\\n  && echo c\n"
               "ENV A=1 \\\n    B=\"two words\"\n")
    run, env = df.steps
    assert run.lineno == 3 and run.shell
    assert run.text == "echo a && echo b && echo c"
    assert env.pairs == {"A": "1", "B": "two words"}


def test_env_forms() -> None:
    df = parse("FROM lamina/base\nENV NAME some value here\nENV K=V K2='x y' K3=\"$HOME/bin\"\n")
    assert df.steps[0].pairs == {"NAME": "some value here"}
    assert df.steps[1].pairs == {"K": "V", "K2": "x y", "K3": "$HOME/bin"}


def test_variable_substitution() -> None:
    values = {"A": "1", "EMPTY": ""}
    assert substitute("$A-${A}-${MISSING:-dflt}-${A:+alt}-${EMPTY:+no}-\\$A", values) == "1-1-dflt-alt--$A"


@pytest.mark.parametrize(("entrypoint", "cmd", "expected"), [
    (None, '["python3", "app.py"]', ["python3", "app.py"]),
    (None, "python3 app.py --port $PORT", ["/bin/sh", "-c", "python3 app.py --port $PORT"]),
    ('["python3", "-m", "http.server"]', '["9000"]', ["python3", "-m", "http.server", "9000"]),
    ('["/entry"]', "run fast", ["/entry", "/bin/sh", "-c", "run fast"]),
    ("exec /entry.sh", '["ignored"]', ["/bin/sh", "-c", "exec /entry.sh"]),
    ('["/entry"]', None, ["/entry"]),
])
def test_entrypoint_and_cmd_combine_as_docker_does(entrypoint: str | None, cmd: str | None,
                                                    expected: list[str]) -> None:
    text = "FROM lamina/base\n"
    if entrypoint:
        text += f"ENTRYPOINT {entrypoint}\n"
    if cmd:
        text += f"CMD {cmd}\n"
    steps = {s.keyword: s for s in parse(text).steps}
    assert final_argv(steps.get("ENTRYPOINT"), steps.get("CMD")) == expected


@pytest.mark.parametrize(("text", "fragment"), [
    ("FROM lamina/base\nRUN true\nHEALTHCHECK CMD true\n", "line 3: HEALTHCHECK is not supported"),
    ("FROM lamina/base\nVOLUME /data\n", "line 2: VOLUME is not supported"),
    ("FROM python:3.12-slim\n", "line 1: FROM: the base image 'python:3.12-slim' is not available"),
    ("FROM lamina/base\nFROM lamina/base\n", "line 2: FROM: multi-stage builds are not supported"),
    ("FROM lamina/base\nCOPY --from=builder /a /b\n", "line 2: COPY: multi-stage builds (--from)"),
    ("FROM lamina/base\nADD https://example.com/x.tgz /x\n", "line 2: ADD: remote sources"),
    ("RUN true\n", "line 1: RUN: the first instruction must be FROM"),
    ("# only a comment\n", "has no FROM line"),
    ("FROM lamina/base\nCOPY onlyone\n", "line 2: COPY: needs a source and a destination"),
    ("FROM lamina/base\nRUN <<EOF\necho hi\nEOF\n", "line 2: RUN: heredocs (<<EOF) are not supported"),
    ("FROM lamina/base\nWROKDIR /app\n", "line 2: WROKDIR is not supported by Lamina's image builder (a typo for "
                                         "WORKDIR?)"),
    ("FROM lamina/base\nCPOY a b\n", "(a typo for COPY?)"),
])
def test_unsupported_or_wrong_lines_name_the_line(text: str, fragment: str) -> None:
    with pytest.raises(BuildError) as info:
        parse(text)
    assert fragment in str(info.value)


def test_real_docker_instructions_are_not_called_typos() -> None:
    for keyword in ("HEALTHCHECK CMD true", "SHELL [\"/bin/bash\"]", "VOLUME /x", "STOPSIGNAL 9", "ONBUILD RUN x"):
        with pytest.raises(BuildError) as info:
            parse(f"FROM lamina/base\n{keyword}\n")
        assert "typo" not in str(info.value), info.value


def test_arg_before_from_and_label_and_user() -> None:
    df = parse("ARG TAG=al2023\nFROM public.ecr.aws/lambda/microvms:${TAG}\nARG PORT=8000\nLABEL a=b\n"
               "USER app:app\nEXPOSE ${PORT}/tcp 53/udp 9000-9001\n")
    assert df.base == "public.ecr.aws/lambda/microvms:al2023"
    arg, label, user, expose = df.steps
    assert arg.pairs == {"PORT": "8000"} and label.pairs == {"a": "b"} and user.text == "app:app"
    assert dockerfile.expose_ports(expose, {"PORT": "8000"}) == [8000, 9000, 9001]


def test_package_manager_lines_are_split_from_the_rest() -> None:
    requests, rest, why = split_run("dnf install -y python3 python3-pip && dnf clean all && pip3 install flask")
    assert why is None and rest == "pip3 install flask"
    assert [(r.manager, r.subcommand, r.packages) for r in requests] == [
        ("dnf", "install", ["python3", "python3-pip"]), ("dnf", "clean", ["all"])]
    requests, rest, _ = split_run("DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends curl")
    assert rest is None and requests[0].packages == ["curl"]
    assert split_run("echo hi | tee /x") == ([], "echo hi | tee /x", None)
    _, _, why = split_run("yum install -y gcc || true")
    assert why and "own" in why


def test_base_provides_checks_the_host() -> None:
    assert base_provides("python3")
    assert base_provides("python3-pip")  # AL2023's name; Debian's pip module is what counts
    assert not base_provides("definitely-not-a-package-lamina")


def test_built_image_round_trips_through_json() -> None:
    import json
    from pathlib import Path

    image = BuiltImage("img", "3", Path("/data/layers/x"),
                       ImageConfig(cmd=["python3", "app.py"], env={"A": "1"}, workdir="/app", user="1000",
                                   expose=[5000]),
                       Hooks(port=9001, enabled={"ready", "run"}, timeouts={"ready": 12.0}), 1024)
    again = BuiltImage.from_dict(json.loads(json.dumps(image.to_dict())))
    assert again == image
