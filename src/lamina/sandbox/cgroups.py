"""Per-sandbox cgroups with plain file writes, on cgroup v1, v2 and hybrid hosts.

Layout: every hierarchy we use gets `<mount>/lamina/<instance>/<sandbox>`, where `instance` is the
server's pid, so a crashed server's groups can be recognised and removed by the next one
(`CgroupTree.remove_stale`).

Which hierarchy does what is decided per resource, once, when the tree is made:
- memory / cpu / pids limits live in the v1 hierarchy that has the controller, or else in the cgroup2
  hierarchy if the controller is available there (pure v2, or a hybrid host that left one to v2);
- kill / freeze / "is it empty" use the cgroup2 group when the kernel offers cgroup.kill / cgroup.freeze
  there. That works on hybrid hosts too, where cgroup2 has no controllers at all; only without them do we
  also join the v1 freezer;
- cpuacct is joined only when it costs nothing (co-mounted with cpu) or when there is no cgroup2 at
  all; otherwise cgroup2's cpu.stat already accounts CPU time.
Every extra hierarchy is one more cgroup.procs write (~0.2 ms) on the cold-start path, hence the pruning.

Everything here is synchronous and cheap (create ~0.2 ms for four hierarchies) except `wait_empty`, and
`freeze`/`remove`, which may sleep-poll briefly. One measured surprise (kernel 6.18): a cgroup.procs write
costs ~0.1 ms only if another migration happened within the last RCU grace period; an isolated attach
takes 5-15 ms (the kernel's cgroup_threadgroup_rwsem switching to its writer mode). Writes back to back,
as `attach` does across hierarchies, pay it once. Mounting cgroup2 with `favordynmods` (6.0+) is the
documented cure; that is a host setting, not something this module changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import time
from dataclasses import dataclass, field

__all__ = ["Cgroup", "CgroupLayout", "CgroupTree"]

log = logging.getLogger("lamina.sandbox")

TOP = "lamina"
CPU_PERIOD_US = 100_000
MIN_QUOTA_US = 1_000            # the kernel's floor for a CFS quota
MB_PER_VCPU = 1769              # Lambda: one full vCPU at 1769 MB
_RESOURCES = ("memory", "cpu", "pids")
_V1_WANTED = ("memory", "cpu", "cpuacct", "pids", "freezer")
_NAME_RE = re.compile(r"[A-Za-z0-9_.:@+-]{1,200}")


# -- tiny file helpers (os.open/os.write: no buffering layers on the hot path) --

def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(fd)


def _keyed(path: str, key: str) -> int | None:
    """The number after `key` in a flat-keyed file (memory.events, cgroup.events, ...)."""
    try:
        text = _read(path)
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == key:
            return int(parts[1])
    return None


def _procs(directory: str) -> list[int]:
    try:
        return [int(p) for p in _read(directory + "/cgroup.procs").split()]
    except FileNotFoundError:
        return []


def _sigkill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _rmdir(path: str, timeout: float) -> None:
    """rmdir, retrying on EBUSY: a group can stay busy for a moment after its last task exits."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- the host --

@dataclass
class CgroupLayout:
    """Where the cgroup hierarchies are mounted on this host (probed once by `detect`)."""

    mode: str                                              # "v2", "v1" or "hybrid"
    v1: dict[str, str] = field(default_factory=dict)       # controller -> mount point (co-mounts share one)
    unified: str | None = None                             # the cgroup2 mount, if any
    v2_controllers: frozenset[str] = frozenset()           # controllers the cgroup2 root offers

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo") -> CgroupLayout | None:
        """The host's layout, or None when we can't manage cgroups (not root, not mounted, read-only)."""
        if not hasattr(os, "geteuid") or os.geteuid() != 0:
            return None
        try:
            with open(mountinfo) as fh:
                lines = fh.read().splitlines()
        except OSError:
            return None
        v1: dict[str, str] = {}
        unified_candidates: list[str] = []
        for line in lines:
            # "<id> <parent> <maj:min> <root> <mountpoint> <opts> [optional...] - <fstype> <source> <superopts>"
            pre, _, post = line.partition(" - ")
            fields, tail = pre.split(), post.split()
            if len(fields) < 6 or len(tail) < 3:
                continue
            mountpoint = fields[4].replace("\\040", " ")
            if "ro" in fields[5].split(","):
                continue
            if tail[0] == "cgroup":
                for opt in tail[2].split(","):
                    if opt in _V1_WANTED and opt not in v1:
                        v1[opt] = mountpoint
            elif tail[0] == "cgroup2":
                unified_candidates.append(mountpoint)
        # Prefer the conventional places when cgroup2 is mounted more than once.
        unified = next((m for m in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified") if m in unified_candidates),
                       unified_candidates[0] if unified_candidates else None)
        v2_controllers: frozenset[str] = frozenset()
        if unified is not None:
            try:
                v2_controllers = frozenset(_read(unified + "/cgroup.controllers").split())
            except OSError:
                unified = None
        if unified is not None and not os.access(unified, os.W_OK):
            unified = None
        v1 = {c: m for c, m in v1.items() if os.access(m, os.W_OK)}
        if "memory" not in v1 and "memory" not in v2_controllers:
            return None  # no memory limits = no point
        uses_v1 = any(r in v1 for r in _RESOURCES)
        mode = ("hybrid" if unified else "v1") if uses_v1 else "v2"
        return cls(mode=mode, v1=v1, unified=unified, v2_controllers=v2_controllers)


# -- one sandbox's group --

class Cgroup:
    """One sandbox's group, present in each hierarchy the tree uses."""

    def __init__(self, tree: CgroupTree, name: str, dirs: list[str]) -> None:
        self.name = name
        self._tree = tree
        self.dirs = dirs                        # one per hierarchy, in attach order
        plan = tree._plan
        self._memory = plan.memory and f"{plan.memory}/{TOP}/{tree.instance}/{name}"
        self._unified = plan.unified and f"{plan.unified}/{TOP}/{tree.instance}/{name}"
        self._freezer = plan.freezer and f"{plan.freezer}/{TOP}/{tree.instance}/{name}"
        self._memory_v2 = plan.memory is not None and plan.memory == plan.unified
        self._procs_files = [d + "/cgroup.procs" for d in dirs]

    def __repr__(self) -> str:
        return f"Cgroup({self.name!r}, {self.dirs!r})"

    def set_cpu(self, vcpus: float) -> None:
        """Change the CPU quota and weight (e.g. a zygote, once its init is done)."""
        self._tree._set_cpu(self.name, vcpus)

    def set_memory(self, memory_mb: int) -> None:
        """Change the memory limit."""
        self._tree._set_memory(self.name, memory_mb)

    # membership

    def procs_files(self) -> list[str]:
        return list(self._procs_files)

    def open_procs_fds(self) -> list[int]:
        """Write-only fds of every cgroup.procs, for a child to join itself by writing "0" to each.

        The kernel checks a cgroup.procs write against the credentials of whoever *opened* the file (v1 and
        v2), so root's fds keep working in a child that has since become an unprivileged uid inside a user
        (and pid, cgroup) namespace. The caller closes them.
        """
        fds: list[int] = []
        try:
            for path in self._procs_files:
                fds.append(os.open(path, os.O_WRONLY | os.O_CLOEXEC))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def attach(self, pid: int) -> None:
        data = str(pid).encode()
        for path in self._procs_files:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def pids(self) -> list[int]:
        """Members in any of the hierarchies (a process could have joined only some of them)."""
        found: set[int] = set()
        for d in self.dirs:
            found.update(_procs(d))
        return sorted(found)

    def _empty(self) -> bool:
        if self._unified is not None:
            populated = _keyed(self._unified + "/cgroup.events", "populated")
            if populated:
                return False
        return not self.pids()

    # stopping

    def kill(self) -> None:
        """SIGKILL every member, including ones forked while we do it."""
        plan = self._tree._plan
        if self._unified is not None and plan.v2_kill:
            try:
                _write(self._unified + "/cgroup.kill", "1")
            except FileNotFoundError:
                return  # already removed
        elif plan.v2_freeze or self._freezer is not None:
            # Frozen tasks can't fork, so one pass gets them all; v1 only acts on SIGKILL after the thaw.
            with contextlib.suppress(FileNotFoundError, TimeoutError):
                self.freeze()
            try:
                for pid in self.pids():
                    _sigkill(pid)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.thaw()
        # Belt and braces: anything that joined only some hierarchies, or (no freezer at all) forked meanwhile.
        for pid in self.pids():
            _sigkill(pid)

    async def wait_empty(self, timeout: float = 5.0) -> bool:
        """True once no process is left in the group. Sleep-polls: cgroup.events notifications are
        rate-limited by the kernel to 100/s, which costs ~10 ms per wait."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            if self._empty():
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.01)

    def remove(self, timeout: float = 0.5) -> None:
        """rmdir in every hierarchy; idempotent. Raises OSError(EBUSY) if members are still there."""
        for d in reversed(self.dirs):
            _rmdir(d, timeout)
        self._tree._groups.pop(self.name, None)

    # pausing

    def freeze(self, timeout: float = 1.0, wait: bool = True) -> None:
        """Stop every member and return once they are all stopped (TimeoutError otherwise); with
        wait=False only ask (the kernel finishes on its own)."""
        plan = self._tree._plan
        if self._unified is not None and plan.v2_freeze:
            path, value, state_file, done = self._unified + "/cgroup.freeze", "1", "/cgroup.events", "frozen 1"
            base = self._unified
        elif self._freezer is not None:
            path, value, state_file, done = self._freezer + "/freezer.state", "FROZEN", "/freezer.state", "FROZEN"
            base = self._freezer
        else:
            raise OSError(errno.ENOTSUP, "no cgroup freezer on this host")
        _write(path, value)
        if not wait:
            return
        # Re-read with a short sleep, not poll(POLLPRI): notifications are rate-limited (see wait_empty).
        deadline = time.monotonic() + timeout
        delay = 0.00005
        while done not in _read(base + state_file):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"cgroup {self.name} did not freeze within {timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def thaw(self) -> None:
        plan = self._tree._plan
        if self._unified is not None and plan.v2_freeze:
            _write(self._unified + "/cgroup.freeze", "0")
        elif self._freezer is not None:
            _write(self._freezer + "/freezer.state", "THAWED")
        else:
            raise OSError(errno.ENOTSUP, "no cgroup freezer on this host")

    # accounting

    def memory_peak_bytes(self) -> int | None:
        if self._memory is None:
            return None
        name = "memory.peak" if self._memory_v2 else "memory.max_usage_in_bytes"  # memory.peak: v2, Linux 5.19+
        try:
            return int(_read(f"{self._memory}/{name}").split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def oom_killed(self) -> bool:
        if self._memory is None:
            return False
        if self._memory_v2:
            count = _keyed(self._memory + "/memory.events", "oom_kill")
        else:
            count = _keyed(self._memory + "/memory.oom_control", "oom_kill")  # Linux 4.13+
        return bool(count)


# -- this server's subtree --

@dataclass
class _Plan:
    """Which mount serves what, for this tree. A mount appears in `mounts` once even if it serves several."""

    mounts: list[str]
    memory: str | None
    cpu: str | None
    pids: str | None
    unified: str | None
    freezer: str | None              # v1 freezer, only when cgroup2 can't freeze
    v2_kill: bool
    v2_freeze: bool
    memsw: bool                      # v1 memory.memsw.* exists (swap accounting)
    swap_max: bool                   # v2 memory.swap.max exists


class CgroupTree:
    """This server's cgroups: `<mount>/lamina/<instance>/<sandbox>` in every hierarchy used."""

    def __init__(self, layout: CgroupLayout, instance: str | None = None) -> None:
        self.layout = layout
        self.instance = instance if instance is not None else str(os.getpid())
        if not _NAME_RE.fullmatch(self.instance) or self.instance in (".", ".."):
            raise ValueError(f"bad cgroup instance name {self.instance!r}")
        self._groups: dict[str, Cgroup] = {}
        self._plan = self._make_plan()

    # setup

    def _make_plan(self) -> _Plan:
        layout = self.layout
        unified = layout.unified

        def serving(resource: str) -> str | None:
            if resource in layout.v1:
                return layout.v1[resource]
            if unified is not None and resource in layout.v2_controllers:
                return unified
            return None

        memory, cpu, pids = serving("memory"), serving("cpu"), serving("pids")
        v2_needed = [r for r, m in (("memory", memory), ("cpu", cpu), ("pids", pids)) if m is not None and m == unified]
        if unified is not None:
            self._make_base(unified, v2_needed)
        v2_base = unified and self._base(unified)
        v2_kill = bool(v2_base) and os.path.exists(f"{v2_base}/cgroup.kill")       # Linux 5.14+
        v2_freeze = bool(v2_base) and os.path.exists(f"{v2_base}/cgroup.freeze")   # Linux 5.2+
        freezer = layout.v1.get("freezer") if not v2_freeze else None
        cpuacct = layout.v1.get("cpuacct")
        if cpuacct is not None and cpuacct != cpu and unified is not None:
            cpuacct = None  # a separate hierarchy costs an attach; cgroup2's cpu.stat accounts CPU already
        mounts: list[str] = []
        for m in (memory, pids, cpu, cpuacct, freezer, unified):  # unified last: it's where kill/freeze look
            if m is not None and m not in mounts:
                mounts.append(m)
        for m in mounts:
            if m != unified:
                self._make_base(m, [])
        memsw = memory is not None and memory != unified and os.path.exists(
            f"{self._base(memory)}/memory.memsw.limit_in_bytes")
        swap_max = memory is not None and memory == unified and os.path.exists(
            f"{self._base(memory)}/memory.swap.max")
        return _Plan(mounts=mounts, memory=memory, cpu=cpu, pids=pids, unified=unified, freezer=freezer,
                     v2_kill=v2_kill, v2_freeze=v2_freeze, memsw=memsw, swap_max=swap_max)

    def _base(self, mount: str) -> str:
        return f"{mount}/{TOP}/{self.instance}"

    def _make_base(self, mount: str, v2_controllers: list[str]) -> None:
        top = f"{mount}/{TOP}"
        if v2_controllers:
            self._enable(mount, v2_controllers)
        for d in (top, self._base(mount)):
            with contextlib.suppress(FileExistsError):
                os.mkdir(d)
            if v2_controllers:
                self._enable(d, v2_controllers)
            elif os.path.exists(d + "/memory.use_hierarchy") and _read(d + "/memory.use_hierarchy").strip() == "0":
                # Old v1 kernels default to a flat hierarchy; limits set below would not nest without this.
                with contextlib.suppress(OSError):
                    _write(d + "/memory.use_hierarchy", "1")

    @staticmethod
    def _enable(directory: str, controllers: list[str]) -> None:
        """v2: let the children of `directory` use these controllers (top-down, so call from the root)."""
        present = set(_read(directory + "/cgroup.subtree_control").split())
        missing = [c for c in controllers if c not in present]
        if not missing:
            return
        try:
            _write(directory + "/cgroup.subtree_control", " ".join("+" + c for c in missing))
        except OSError as exc:
            # EBUSY: the group has processes of its own ("no internal processes"), e.g. a container's root.
            raise OSError(exc.errno, f"cannot enable {missing} in {directory}: {exc.strerror}") from None

    # groups

    def create(self, name: str, memory_mb: int, pids_max: int = 1024, cpu_vcpus: float | None = None) -> Cgroup:
        """A new group with Lambda-style limits: memory, CPU proportional to memory, and a pids cap."""
        if not _NAME_RE.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"bad cgroup name {name!r}")
        if memory_mb <= 0 or pids_max <= 0:
            raise ValueError("memory_mb and pids_max must be positive")
        plan = self._plan
        dirs: list[str] = []
        try:
            for m in plan.mounts:
                d = f"{self._base(m)}/{name}"
                os.mkdir(d)
                dirs.append(d)
            self._set_limits(name, memory_mb, pids_max, cpu_vcpus)
        except BaseException:
            for d in reversed(dirs):
                with contextlib.suppress(OSError):
                    os.rmdir(d)
            raise
        group = Cgroup(self, name, dirs)
        self._groups[name] = group
        return group

    def _set_limits(self, name: str, memory_mb: int, pids_max: int, cpu_vcpus: float | None) -> None:
        plan = self._plan
        self._set_memory(name, memory_mb)
        if plan.cpu is not None:
            self._set_cpu(name, cpu_vcpus if cpu_vcpus is not None else memory_mb / MB_PER_VCPU)
        if plan.pids is not None:
            _write(f"{self._base(plan.pids)}/{name}/pids.max", str(pids_max))

    def _set_memory(self, name: str, memory_mb: int) -> None:
        plan = self._plan
        if plan.memory is None:
            return
        limit = memory_mb * 1024 * 1024
        d = f"{self._base(plan.memory)}/{name}"
        if plan.memory == plan.unified:
            _write(d + "/memory.max", str(limit))
            if plan.swap_max:
                _write(d + "/memory.swap.max", "0")
        else:
            # memory+swap at the same limit: no escaping the limit by swapping. When raising, the
            # memory limit may not exceed memsw's, so memsw goes first; when lowering, last.
            cur = int(_read(d + "/memory.limit_in_bytes"))
            order = ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"] if limit > cur else \
                ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
            for f in order:
                if f == "memory.limit_in_bytes" or plan.memsw:
                    _write(f"{d}/{f}", str(limit))

    def _set_cpu(self, name: str, vcpus: float) -> None:
        plan = self._plan
        if plan.cpu is None:
            return
        quota = max(MIN_QUOTA_US, round(vcpus * CPU_PERIOD_US))
        d = f"{self._base(plan.cpu)}/{name}"
        if plan.cpu == plan.unified:
            _write(d + "/cpu.max", f"{quota} {CPU_PERIOD_US}")
            _write(d + "/cpu.weight", str(min(10_000, max(1, round(100 * vcpus)))))
        else:
            _write(d + "/cpu.cfs_period_us", str(CPU_PERIOD_US))
            _write(d + "/cpu.cfs_quota_us", str(quota))
            _write(d + "/cpu.shares", str(min(262_144, max(2, round(1024 * vcpus)))))

    def get(self, name: str) -> Cgroup | None:
        return self._groups.get(name)

    # cleanup

    def _all_mounts(self) -> list[str]:
        """Every hierarchy a Lamina server might have used, whatever this one's plan."""
        mounts: list[str] = []
        for m in [*self.layout.v1.values(), self.layout.unified]:
            if m is not None and m not in mounts:
                mounts.append(m)
        return mounts

    def _destroy(self, instance: str, timeout: float = 2.0) -> bool:
        """Kill every process under lamina/<instance> in every hierarchy, then remove the directories."""
        bases = [f"{m}/{TOP}/{instance}" for m in self._all_mounts()]
        bases = [b for b in bases if os.path.isdir(b)]
        if not bases:
            return False
        dirs: list[str] = []  # bottom-up, so rmdir order is right
        for base in bases:
            for root, _subdirs, _files in os.walk(base, topdown=False):
                dirs.append(root)
        for base in bases:
            if os.path.exists(base + "/cgroup.kill"):  # kills the whole subtree at once
                with contextlib.suppress(OSError):
                    _write(base + "/cgroup.kill", "1")
        deadline = time.monotonic() + timeout
        while True:
            members = {pid for d in dirs for pid in _procs(d)}
            if not members or time.monotonic() >= deadline:
                break
            for pid in members:
                _sigkill(pid)
            for d in dirs:  # v1: frozen tasks only die once thawed
                if os.path.exists(d + "/freezer.state"):
                    with contextlib.suppress(OSError):
                        _write(d + "/freezer.state", "THAWED")
            time.sleep(0.002)
        for d in dirs:
            _rmdir(d, 0.5)
        return True

    def remove_stale(self) -> int:
        """Remove the subtrees of Lamina servers that are no longer running; returns how many.

        Only numeric instance names (server pids) are judged; a pid is "running" if any process has it,
        so a recycled pid keeps its stale tree until that process is gone too (harmless, just late).
        """
        stale: set[str] = set()
        for m in self._all_mounts():
            try:
                entries = os.listdir(f"{m}/{TOP}")
            except FileNotFoundError:
                continue
            for entry in entries:
                if entry.isdigit() and entry != self.instance and not _pid_alive(int(entry)):
                    stale.add(entry)
        removed = 0
        for instance in sorted(stale):
            try:
                removed += self._destroy(instance)
            except OSError as exc:
                # Still busy after the retries (a group that lingers after its last task): it is another
                # server's leftover, not this server's, so it is skipped and tried again at the next start.
                log.warning("stale cgroup subtree of server %s not removed (%s); skipped", instance, exc)
        return removed

    def close(self) -> None:
        """Kill and remove everything under this server's subtree (also groups this object didn't make)."""
        self._destroy(self.instance)
        self._groups.clear()
