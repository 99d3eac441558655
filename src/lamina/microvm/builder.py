"""Run a Dockerfile (dockerfile.py's subset) into an image version's layer directory.

- COPY / ADD copy from the build context (the unpacked code artifact; nothing may escape it) into
  the layer, owned by the image's root (or --chown), parents created with the base's modes; ADD
  unpacks local tar archives. Destinations in the host's read-only base (/usr outside /usr/local,
  /bin, /lib, ...) fail the build.
- RUN runs `/bin/sh -c` (or the exec form) in a **build sandbox**: the same isolation as an instance
  (namespaces, cgroup, seccomp, container capabilities; rootfs.build_mounts) except that it shares
  the host's network, so `pip install -r requirements.txt` reaches PyPI, with the host's resolv.conf,
  /etc/pip.conf and CA certificates visible — but not the host itself: its loopback, its own
  addresses and link-local ones are refused (sandbox/hostguard.py, cgroup BPF). The layer is the
  root's upper dir, so what RUN writes is the layer; pip as root installs into /usr/local (Debian's
  scheme), which is the layer's too. Debian's pip refuses system installs without
  PIP_BREAK_SYSTEM_PACKAGES=1, which RUN gets (with PIP_ROOT_USER_ACTION=ignore and
  PIP_NO_CACHE_DIR=1: no pip cache in the image).
- Package-manager lines are checked against the base (see dockerfile.py): what it already provides
  is logged as "base already provides ..." and skipped; anything else fails the build.
- ENV / ARG / WORKDIR / USER / EXPOSE / CMD / ENTRYPOINT make the ImageConfig.
Every step is logged as `Step 3/8 : RUN ...`, followed by every line RUN printed.

On the process backend (no root) RUN runs on the host in the layer's directories with
PIP_USER=1 and PYTHONUSERBASE=<layer>/usr/local — a best effort, NOT isolated.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shlex
import shutil
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

from lamina.microvm import dockerfile, rootfs
from lamina.microvm.dockerfile import Instruction
from lamina.microvm.engine import BuildError, BuildRequest, ImageConfig
from lamina.microvm.instance import DEFAULT_PATH, NOFILE, PIDS_MAX
from lamina.sandbox.base import UID_BASE, SandboxBackend, SandboxError, SandboxSpec

RUN_TIMEOUT_S = 1800.0
BUILD_MEMORY_MB = 2048
# Where the base cannot change: COPY/ADD there would hide the host's files or never be seen.
_READ_ONLY = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/dev", "/sys")
_BUILD_ENV = {
    "PIP_BREAK_SYSTEM_PACKAGES": "1",
    "PIP_ROOT_USER_ACTION": "ignore",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    "PIP_NO_CACHE_DIR": "1",
    "DEBIAN_FRONTEND": "noninteractive",
}

# Package names of AL2023 / Fedora / Alpine that the Debian base ships under another name (or as a
# path we can check): name -> Debian package or absolute path.
_PACKAGE_ALIASES = {
    "python3": "/usr/bin/python3", "python": "/usr/bin/python3", "python3.11": "/usr/bin/python3.11",
    "python3-pip": "/usr/lib/python3/dist-packages/pip", "python-pip": "/usr/lib/python3/dist-packages/pip",
    "python3-pip-wheel": "/usr/lib/python3/dist-packages/pip", "pip": "/usr/lib/python3/dist-packages/pip",
    "py3-pip": "/usr/lib/python3/dist-packages/pip", "python3.11-pip": "/usr/lib/python3/dist-packages/pip",
    "python3-devel": "python3-dev", "python3.11-devel": "python3.11-dev", "gcc-c++": "g++",
    "curl-minimal": "curl", "shadow-utils": "passwd", "procps-ng": "procps", "which": "debianutils",
    "sqlite": "sqlite3", "openssl-devel": "libssl-dev", "libffi-devel": "libffi-dev", "git-core": "git",
}


def base_provides(package: str) -> bool:
    """Whether the host's base already has this package (or its Debian equivalent) installed."""
    name = package.split("=", 1)[0]
    for suffix in (".x86_64", ".aarch64", ".noarch"):
        name = name.removesuffix(suffix)
    target = _PACKAGE_ALIASES.get(name, name)
    if target.startswith("/"):
        return os.path.exists(target)
    try:
        result = subprocess.run(["dpkg-query", "-W", "-f=${Status}", target], capture_output=True, text=True,
                                timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip().endswith("installed") and "not-installed" not in \
        result.stdout


class _State:
    def __init__(self) -> None:
        # The base image's environment, as a Docker base image declares it (so `ENV PATH=/x:$PATH` works).
        self.env: dict[str, str] = {"PATH": DEFAULT_PATH}
        self.args: dict[str, str] = {}
        self.workdir = "/"
        self.user = "root"
        self.expose: list[int] = []
        self.expose_udp: list[int] = []
        self.cmd: Instruction | None = None
        self.entrypoint: Instruction | None = None

    def values(self) -> dict[str, str]:
        return {**self.args, **self.env}


class Builder:
    """Runs one BuildRequest's Dockerfile into its layer directory."""

    def __init__(self, backend: SandboxBackend, base: rootfs.Base | None) -> None:
        self.backend = backend
        self.base = base
        self.linux = backend.name == "linux"

    async def run(self, request: BuildRequest) -> ImageConfig:
        context = request.context_dir
        path = next((context / n for n in ("Dockerfile", "dockerfile") if (context / n).is_file()), None)
        if path is None:
            raise BuildError("the code artifact has no Dockerfile at its root")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise BuildError(f"cannot read the Dockerfile: {exc}") from None
        parsed = dockerfile.parse(text)
        rootfs.prepare_layer(request.layer_dir, owned=self.linux)
        state = _State()
        total = len(parsed.steps) + 1
        request.log(f"Step 1/{total} : FROM {parsed.base}")
        try:
            for number, ins in enumerate(parsed.steps, 2):
                request.log(f"Step {number}/{total} : {ins.describe()}")
                await self._step(request, state, ins, f"Step {number}/{total}")
        finally:
            shutil.rmtree(rootfs.work_dir_for(request.layer_dir), ignore_errors=True)
        argv = dockerfile.final_argv(state.entrypoint, state.cmd)
        if not argv:
            raise BuildError("the Dockerfile has no CMD or ENTRYPOINT: say how to start the application")
        env = dict(state.env)
        env.update(request.env)
        return ImageConfig(cmd=argv, env=env, workdir=state.workdir, user=state.user,
                           expose=list(dict.fromkeys(state.expose)),
                           expose_udp=list(dict.fromkeys(state.expose_udp)))

    # -- steps --

    async def _step(self, request: BuildRequest, state: _State, ins: Instruction, label: str) -> None:
        k = ins.keyword
        values = state.values()
        if k == "ENV":
            for key, value in ins.pairs.items():
                state.env[key] = dockerfile.substitute(value, {**state.args, **state.env})
        elif k == "ARG":
            for key, value in ins.pairs.items():
                state.args.setdefault(key, dockerfile.substitute(value, values))
        elif k in ("LABEL", "MAINTAINER"):
            pass
        elif k == "WORKDIR":
            path = dockerfile.substitute(ins.text, values)
            state.workdir = os.path.normpath(os.path.join(state.workdir, path))
            self._check_writable(ins, state.workdir)
            self._mkdirs(request.layer_dir, state.workdir)
        elif k == "USER":
            state.user = dockerfile.substitute(ins.text, values).strip()
            self._user(ins, request.layer_dir, state.user)
        elif k == "EXPOSE":
            state.expose.extend(dockerfile.expose_ports(ins, values))
            state.expose_udp.extend(dockerfile.expose_ports(ins, values, "udp"))
        elif k == "CMD":
            state.cmd = ins
        elif k == "ENTRYPOINT":
            state.entrypoint = ins
        elif k in ("COPY", "ADD"):
            await asyncio.get_running_loop().run_in_executor(None, self._copy, request, state, ins)
        elif k == "RUN":
            await self._run(request, state, ins, label)

    def _user(self, ins: Instruction, layer: Path, user: str) -> tuple[int, int, str]:
        roots = [layer] + ([self.base.dir] if self.base else [])
        try:
            return rootfs.resolve_user(user, roots)
        except ValueError as exc:
            raise ins.error(str(exc)) from None

    def _owner(self) -> tuple[int, int] | None:
        return (UID_BASE, UID_BASE) if self.linux else None

    def _mkdirs(self, layer: Path, path: str) -> Path:
        return rootfs.make_dirs(layer, path, self.base.dir if self.base else None, self._owner())

    @staticmethod
    def _check_writable(ins: Instruction, path: str) -> None:
        for ro in _READ_ONLY:
            if (path == ro or path.startswith(ro + "/")) and not (path == "/usr/local" or
                                                                  path.startswith("/usr/local/")):
                raise ins.error(f"{path} is in the base's read-only {ro}: only /usr/local and directories "
                                f"outside /usr, /bin, /lib, /sbin can be written")

    # -- COPY / ADD --

    def _copy(self, request: BuildRequest, state: _State, ins: Instruction) -> None:
        values = state.values()
        context = request.context_dir.resolve()
        words = [dockerfile.substitute(w, values) for w in ins.args]
        sources, dest = words[:-1], words[-1]
        matches: list[Path] = []
        for source in sources:
            pattern = source.lstrip("/") or "."
            found = sorted(glob.glob(pattern, root_dir=context)) if glob.has_magic(pattern) else [pattern]
            if not found:
                raise ins.error(f"no file in the code artifact matches {source!r}")
            for rel in found:
                real = Path(os.path.realpath(context / rel))
                if real != context and context not in real.parents:
                    raise ins.error(f"{source!r} is outside the build context (the code artifact)")
                if not real.exists():
                    raise ins.error(f"{source!r} is not in the code artifact")
                matches.append(real)
        into_dir = dest.endswith("/") or len(matches) > 1 or dest in (".", "./")
        dest_path = os.path.normpath(os.path.join(state.workdir, dest))
        self._check_writable(ins, dest_path)
        layer = request.layer_dir
        existing = rootfs.resolve_in(layer, dest_path)
        in_base = self.base is not None and (self.base.dir / dest_path.lstrip("/")).is_dir()
        if (existing.is_dir() and not existing.is_symlink()) or in_base:
            into_dir = True
        owner = self._chown(ins, layer, state)
        mode = self._chmod(ins)
        for src in matches:
            if ins.keyword == "ADD" and src.is_file() and tarfile.is_tarfile(src):
                target = self._mkdirs(layer, dest_path)
                with tarfile.open(src) as tar:
                    tar.extractall(target, filter="data")
                self._own(target, owner, mode, tree=True)
                continue
            if src.is_dir():
                target = self._mkdirs(layer, dest_path)
                shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
                self._own_contents(src, target, owner, mode)
                continue
            if into_dir:
                target = self._mkdirs(layer, dest_path) / src.name
            else:
                parent = self._mkdirs(layer, os.path.dirname(dest_path) or "/")
                target = parent / os.path.basename(dest_path)
            if target.is_symlink() or (target.exists() and not target.is_file()):
                if target.is_dir() and not target.is_symlink():
                    raise ins.error(f"cannot replace the directory {dest_path} with a file")
                target.unlink()  # e.g. an overlayfs whiteout left by an earlier RUN rm
            shutil.copy2(src, target)
            self._own(target, owner, mode, tree=False)

    def _chown(self, ins: Instruction, layer: Path, state: _State) -> tuple[int, int] | None:
        spec = ins.flags.get("chown")
        if not self.linux:
            return None
        if not spec:
            return UID_BASE, UID_BASE
        uid, gid, _home = self._user(ins, layer, dockerfile.substitute(spec, state.values()))
        return UID_BASE + uid, UID_BASE + gid

    @staticmethod
    def _chmod(ins: Instruction) -> int | None:
        spec = ins.flags.get("chmod")
        if not spec:
            return None
        try:
            return int(spec, 8)
        except ValueError:
            raise ins.error(f"--chmod={spec} is not an octal mode") from None

    @staticmethod
    def _own(path: Path, owner: tuple[int, int] | None, mode: int | None, tree: bool) -> None:
        paths = [path]
        if tree:
            for root, dirs, files in os.walk(path):
                paths.extend(Path(root) / n for n in dirs + files)
        for p in paths:
            if owner is not None:
                os.lchown(p, *owner)
            if mode is not None and not p.is_symlink():
                os.chmod(p, mode)

    def _own_contents(self, src: Path, target: Path, owner: tuple[int, int] | None, mode: int | None) -> None:
        """Only what this COPY brought (a merge into an existing directory keeps the rest's owners)."""
        for root, dirs, files in os.walk(src):
            rel = Path(root).relative_to(src)
            for name in dirs + files:
                self._own(target / rel / name, owner, mode, tree=False)
        if owner is not None:
            os.lchown(target, *owner)

    # -- RUN --

    async def _run(self, request: BuildRequest, state: _State, ins: Instruction, label: str) -> None:
        if ins.shell:
            requests, rest, unsplittable = dockerfile.split_run(ins.text)
            if unsplittable:
                raise ins.error(unsplittable)
        else:
            req = dockerfile.package_request(ins.argv or [])
            requests, rest = ([req], None) if req is not None else ([], None)
        for req in requests:
            self._check_packages(ins, req, request)
        if requests and rest is None:
            return
        if ins.shell:
            assert rest is not None  # split_run leaves nothing to run only when it found package-manager calls
            argv = [*dockerfile.SHELL, rest]
        else:
            argv = list(ins.argv or [])
        uid, gid, home = self._user(ins, request.layer_dir, state.user)
        env = {"PATH": DEFAULT_PATH, "HOME": home, "HOSTNAME": "build", "LANG": "C.UTF-8", **_BUILD_ENV,
               **state.env}
        started = time.monotonic()
        code = await self._execute(request, state, argv, env, (uid, gid), ins)
        if code != 0:
            how = f"was killed by signal {-code}" if code < 0 else f"returned a non-zero code: {code}"
            command = argv[2] if ins.shell else shlex.join(argv)
            raise ins.error(f"`{command}` {how} ({label})")
        request.log(f" ---> done in {time.monotonic() - started:.1f}s")

    def _check_packages(self, ins: Instruction, req: dockerfile.PackageRequest, request: BuildRequest) -> None:
        if dockerfile.quiet_subcommand(req):
            request.log(f" ---> skipped: `{req.manager} {req.subcommand}` changes nothing in the read-only base")
            return
        if req.subcommand not in ("install", "add", "reinstall"):
            raise ins.error(f"`{req.manager} {req.subcommand}` is not supported: the base is the host's read-only "
                            f"system and packages cannot be changed")
        missing = [p for p in req.packages if not base_provides(p)]
        if missing:
            raise ins.error(f"the base does not provide {', '.join(missing)} and packages cannot be installed "
                            f"into it (Lamina builds on the host's read-only system); install them on the host "
                            f"or use pip / a static binary in /usr/local")
        request.log(f" ---> base already provides {', '.join(req.packages) or 'everything asked for'}; skipped")

    async def _execute(self, request: BuildRequest, state: _State, argv: list[str], env: dict[str, str],
                       user: tuple[int, int], ins: Instruction) -> int:
        loop = asyncio.get_running_loop()
        read_fd, write_fd = os.pipe()
        os.set_inheritable(write_fd, False)
        done: asyncio.Future[int] = loop.create_future()

        def on_exit(code: int) -> None:
            if not done.done():
                done.set_result(code)

        name = f"mvb-{uuid.uuid4().hex[:12]}"
        try:
            spec = self._spec(request, state, argv, env, user, write_fd, name)
            sandbox = await self.backend.start(spec, on_exit)
        except (SandboxError, OSError) as exc:
            os.close(read_fd)
            raise ins.error(f"cannot start the build sandbox: {exc}") from None
        finally:
            os.close(write_fd)
        reader = asyncio.StreamReader(limit=2 ** 20, loop=loop)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                                    os.fdopen(read_fd, "rb", buffering=0))

        async def pump() -> None:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    line = await reader.read(2 ** 16)
                if not line:
                    return
                request.log(line.decode(errors="replace").rstrip("\r\n"))

        pumping = asyncio.ensure_future(pump())
        try:
            code = await asyncio.wait_for(asyncio.shield(done), RUN_TIMEOUT_S)
        except TimeoutError:
            raise ins.error(f"did not finish within {RUN_TIMEOUT_S:.0f}s") from None
        finally:
            sandbox.kill()
            with contextlib.suppress(OSError):
                await sandbox.cleanup()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(pumping, 5)
            transport.close()
        return code

    def _spec(self, request: BuildRequest, state: _State, argv: list[str], env: dict[str, str],
              user: tuple[int, int], log_fd: int, name: str) -> SandboxSpec:
        layer = request.layer_dir
        memory = max(BUILD_MEMORY_MB, 4 * request.memory_mib)
        if self.linux:
            assert self.base is not None
            return SandboxSpec(
                name=name, argv=argv, env=env, code_dir=layer, memory_mb=memory, log_fd=log_fd,
                cpu_vcpus=float(os.cpu_count() or 1), pids_max=PIDS_MAX, guard_host=True,
                layered={"mounts": rootfs.build_mounts(self.base, layer), "cwd": state.workdir,
                         "user": list(user), "share_net": True, "hostname": "build", "nofile": NOFILE})
        # process backend: the layer's directories stand in for the image's paths
        local = layer / "usr" / "local"
        env = dict(env, HOME=str(layer / "root"), PIP_USER="1", PYTHONUSERBASE=str(local),
                   PATH=f"{local / 'bin'}:{env['PATH']}")
        (layer / "root").mkdir(exist_ok=True)
        cwd = layer / state.workdir.lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        if not argv[0].startswith("/"):
            argv = [shutil.which(argv[0], path=env["PATH"]) or argv[0], *argv[1:]]
        return SandboxSpec(name=name, argv=argv, env=env, code_dir=cwd, memory_mb=memory, log_fd=log_fd)
