"""Transparent huge pages for llama.cpp's weights (Linux, glibc).

Every generated token reads all of the model's weights once, a gigabyte for the
default target; with 4 KiB pages that is a quarter of a million TLB entries per token,
and in a virtual machine each miss walks two page tables.  llama.cpp allocates its
(repacked) weights with the C library's allocator, and where the kernel gives huge
pages only on request (`/sys/kernel/mm/transparent_hugepage/enabled` = madvise, the
Ubuntu and this machine's default) nothing requests them.  glibc ≥ 2.35 does, for
every large allocation, when started with the tunable `glibc.malloc.hugetlb=1`.

Measured on this 2-core VM (default target, 2 threads, one-token decodes at 70 tokens
of context, medians of 55): 69 ms without, 56 ms with — plain decoding 18% faster,
and the same for llama.cpp's own tools started with it.  glibc reads tunables only
when a process starts, so a process that decodes is started with it: the app's engine
process by its environment, the command line by re-executing itself once.
`TANDEM_HUGEPAGES=0` turns it off.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb=1"
THP_ENABLED = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def thp_mode() -> str | None:
    """The kernel's transparent huge page policy: always, madvise, never (None: no THP)."""
    try:
        text = THP_ENABLED.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def _glibc_has_tunable() -> bool:
    lib, version = platform.libc_ver()
    if lib != "glibc":
        return False
    try:
        major, minor = (int(x) for x in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (2, 35)


def applies() -> bool:
    """Whether starting a decoding process with the tunable changes anything here."""
    return (sys.platform.startswith("linux") and os.environ.get("TANDEM_HUGEPAGES", "1") != "0"
            and thp_mode() == "madvise" and _glibc_has_tunable())


def in_effect(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return TUNABLE in env.get("GLIBC_TUNABLES", "").split(":")


def merged(tunables: str | None) -> str:
    """A GLIBC_TUNABLES value: `tunables` plus ours, the others kept."""
    parts = [t for t in (tunables or "").split(":") if t]
    return ":".join(parts if TUNABLE in parts else [*parts, TUNABLE])


def with_tunable(env: Mapping[str, str]) -> dict[str, str]:
    """`env` plus the tunable, other tunables kept."""
    return {**env, "GLIBC_TUNABLES": merged(env.get("GLIBC_TUNABLES"))}


def active() -> bool:
    """Whether this process's large allocations get huge pages."""
    return in_effect() or thp_mode() == "always"


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a process that will decode (the engine process, llama.cpp's tools)."""
    env = os.environ if env is None else env
    return with_tunable(env) if applies() else dict(env)


def reexec_with_huge_pages() -> None:
    """Restart this process once with the tunable, where it applies and is not set.
    Only for a process's real start (the `tandem` command), never from inside a library
    call; returns if the restart is not possible."""
    if not applies() or in_effect():
        return
    if getattr(sys, "frozen", False):
        argv = [sys.executable, *sys.argv[1:]]
    else:
        argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, *sys.argv]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, with_tunable(os.environ))
    except OSError:
        return


def status() -> str:
    """One phrase for `tandem doctor` and the benchmark's machine record."""
    mode = thp_mode()
    if mode == "always":
        return "on (the kernel gives huge pages to every large allocation)"
    if mode == "madvise":
        if os.environ.get("TANDEM_HUGEPAGES", "1") == "0" and not in_effect():
            return "off (TANDEM_HUGEPAGES=0)"
        if in_effect():
            return f"on ({TUNABLE})"
        return "off (set TANDEM_HUGEPAGES=1 or GLIBC_TUNABLES=glibc.malloc.hugetlb=1)" if _glibc_has_tunable() \
            else "off (glibc older than 2.35)"
    return "off (the kernel's transparent huge pages are disabled)" if mode == "never" else "not applicable"
