"""Keep a cgroup's sockets away from the host itself, for sandboxes that share the host's network.

A MicroVM image build runs its RUN lines in the host's network namespace (so `pip install` reaches
PyPI), where 127.0.0.1 is the host's loopback: Lamina's own API and anything else listening there.
This attaches cgroup socket-address BPF programs (cgroup v2, Linux >= 4.17; BPF_JMP32 needs 5.1) to
the sandbox's cgroup that refuse (EPERM) `connect()` and unconnected `sendmsg()` to:
- IPv4: 0.0.0.0, 127.0.0.0/8, 169.254.0.0/16 (link-local, cloud metadata) and the host's own addresses;
- IPv6: anything outside 2000::/3 (loopback, unspecified, v4-mapped, link-local, ULA), and the host's
  own global addresses.
Everything else — the internet, the host's resolver — stays reachable. The programs are a few
hand-assembled instructions loaded with the bpf(2) syscall through ctypes (no libbpf needed); they
go away with the cgroup.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import platform
import struct

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
ATTACH_INET4_CONNECT, ATTACH_INET6_CONNECT, ATTACH_UDP4_SENDMSG, ATTACH_UDP6_SENDMSG = 10, 11, 14, 15
_SYS_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# struct bpf_sock_addr offsets: user_family 0, user_ip4 4, user_ip6[4] 8..20
_IP4, _IP6 = 4, 8


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


_LDX_W = 0x61        # dst = *(u32 *)(src + off)
_MOV_REG = 0xBF      # dst = src (64-bit)
_AND_K = 0x57        # dst &= imm (64-bit)
_JEQ32_K = 0x16      # if (u32)dst == imm goto +off
_JNE32_K = 0x56      # if (u32)dst != imm goto +off
_MOV_K = 0xB7        # dst = imm
_EXIT = 0x95
_DENY = 0x7FFF       # placeholder jump offset: "to the deny label"


def _s32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def _le(packed: bytes) -> int:
    """A 4-byte network-order chunk as the u32 the program loads from memory (little-endian host)."""
    return struct.unpack("<I", packed)[0]


def _program(checks: list[list[bytes]]) -> bytes:
    """Allow unless one of `checks` matches. Each check is a list of instructions that falls through
    when it does not match and jumps to the deny label (offset _DENY, resolved here) when it does."""
    body: list[bytes] = []
    for check in checks:
        body.extend(check)
    body += [_insn(_MOV_K, 0, imm=1), _insn(_EXIT)]   # allow
    deny_at = len(body)
    body += [_insn(_MOV_K, 0, imm=0), _insn(_EXIT)]   # deny
    out = []
    for i, ins in enumerate(body):
        code, regs, off, imm = struct.unpack("<BBhi", ins)
        if off == _DENY:
            off = deny_at - i - 1
        out.append(struct.pack("<BBhi", code, regs, off, imm))
    return b"".join(out)


def ipv4_program(host_addrs: list[str]) -> bytes:
    r"""connect4 / sendmsg4: deny 0.0.0.0, 127/8, 169.254/16 and the host's addresses."""
    checks = [[
        _insn(_LDX_W, 2, 1, _IP4),                  # r2 = user_ip4 (network order in memory)
        _insn(_JEQ32_K, 2, off=_DENY, imm=0),       # 0.0.0.0
        _insn(_MOV_REG, 3, 2),
        _insn(_AND_K, 3, imm=0xFF),
        _insn(_JEQ32_K, 3, off=_DENY, imm=127),     # 127.0.0.0/8 (first byte)
        _insn(_MOV_REG, 3, 2),
        _insn(_AND_K, 3, imm=0xFFFF),
        _insn(_JEQ32_K, 3, off=_DENY, imm=_le(bytes([169, 254, 0, 0]))),  # 169.254.0.0/16
    ]]
    for addr in host_addrs:
        checks.append([_insn(_JEQ32_K, 2, off=_DENY, imm=_s32(_le(ipaddress.IPv4Address(addr).packed)))])
    return _program(checks)


def ipv6_program(host_addrs: list[str]) -> bytes:
    """connect6 / sendmsg6: deny outside 2000::/3 and the host's own global addresses."""
    checks = [[
        _insn(_LDX_W, 2, 1, _IP6),
        _insn(_MOV_REG, 3, 2),
        _insn(_AND_K, 3, imm=0xE0),
        _insn(_JNE32_K, 3, off=_DENY, imm=0x20),    # first byte not 001xxxxx: not global unicast
    ]]
    for addr in host_addrs:
        packed = ipaddress.IPv6Address(addr).packed
        words = [_le(packed[i:i + 4]) for i in range(0, 16, 4)]
        # Match all four words: fall through (allow) at the first that differs.
        check: list[bytes] = []
        for n, word in enumerate(words):
            check.append(_insn(_LDX_W, 4, 1, _IP6 + 4 * n))
            if n < 3:
                check.append(_insn(_JNE32_K, 4, off=2 * (3 - n), imm=_s32(word)))  # past this check
            else:
                check.append(_insn(_JEQ32_K, 4, off=_DENY, imm=_s32(word)))
        checks.append(check)
    return _program(checks)


def host_addresses() -> tuple[list[str], list[str]]:
    """The host's own IPv4 (from /proc/net/fib_trie LOCAL routes) and global IPv6 addresses."""
    v4: set[str] = set()
    with contextlib.suppress(OSError):
        last = None
        with open("/proc/net/fib_trie") as fh:
            for line in fh:
                text = line.strip()
                if text.startswith("|--") or text.startswith("+--"):
                    last = text.split()[1].split("/")[0]
                elif "/32 host LOCAL" in text and last:
                    v4.add(last)
    v6: set[str] = set()
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as fh:
        for line in fh:
            addr = ipaddress.IPv6Address(bytes.fromhex(line.split()[0]))
            if addr.is_global or (int(addr) >> 125) == 1:
                v6.add(str(addr))
    v4 = {a for a in v4 if not a.startswith("127.")}
    return sorted(v4), sorted(v6)


def _bpf(cmd: int, attr: bytes) -> int:
    if _SYS_BPF is None:
        raise OSError(38, f"bpf(2) number unknown on {platform.machine()}")
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _libc.syscall(_SYS_BPF, cmd, buf, len(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return ret


def _load(program: bytes, attach_type: int) -> int:
    insns = ctypes.create_string_buffer(program, len(program))
    license_ = ctypes.create_string_buffer(b"GPL")
    attr = bytearray(128)
    struct.pack_into("<IIQQ", attr, 0, BPF_PROG_TYPE_CGROUP_SOCK_ADDR, len(program) // 8,
                     ctypes.addressof(insns), ctypes.addressof(license_))
    attr[48:64] = b"lamina_hostgrd\0\0"
    struct.pack_into("<I", attr, 68, attach_type)  # expected_attach_type
    return _bpf(BPF_PROG_LOAD, bytes(attr))


def guard(cgroup_dir: str, v4: list[str] | None = None, v6: list[str] | None = None) -> None:
    """Attach the programs to a cgroup v2 directory. OSError when the kernel refuses (no cgroup BPF)."""
    if v4 is None or v6 is None:
        v4, v6 = host_addresses()
    programs = [(ipv4_program(v4), ATTACH_INET4_CONNECT), (ipv4_program(v4), ATTACH_UDP4_SENDMSG),
                (ipv6_program(v6), ATTACH_INET6_CONNECT), (ipv6_program(v6), ATTACH_UDP6_SENDMSG)]
    cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for program, attach_type in programs:
            prog = _load(program, attach_type)
            try:
                _bpf(BPF_PROG_ATTACH, struct.pack("<IIII", cg, prog, attach_type, 0) + bytes(112))
            finally:
                os.close(prog)
    finally:
        os.close(cg)
