"""What the numbers were measured on: saved with every benchmark and trace."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def model_file(path: str | None) -> dict | None:
    if not path:
        return None
    p = Path(path)
    return {"name": p.name, "path": str(p), "bytes": p.stat().st_size if p.exists() else None}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(*, threads: int, target: str | None = None, draft: str | None = None) -> dict:
    from engine.llama import hugepages
    from engine.llama.backend import default_threads, system_info
    from engine.llama.build_flags import choose_build

    try:
        import llama_cpp

        lcp_version = llama_cpp.__version__
    except (ImportError, AttributeError):
        lcp_version = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_model(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": default_threads(),
        "threads": threads,
        "backend": system_info().strip(),
        "huge_pages": hugepages.status(),  # plain decoding ~18% faster with them here
        "cmake_args_chosen": choose_build().cmake_args,
        "llama_cpp_python": lcp_version,
        "python": sys.version.split()[0],
        # Other processes on the machine distort timings; a reader should know.
        "load_average_at_start": load_average(),
        "git_commit": git_commit(Path(__file__).resolve().parents[2]),
        "target": model_file(target),
        "draft": model_file(draft),
    }
