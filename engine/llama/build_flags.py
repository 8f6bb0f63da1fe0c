"""Choose how llama.cpp is compiled for the machine the install runs on.

Pure standard library: scripts/bootstrap.py imports this before any virtual
environment exists.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LLAMA_CPP_PYTHON_VERSION = "0.3.36"

# SIMD flags of GGML_NATIVE=OFF builds, each switched on only when /proc/cpuinfo
# reports the matching feature.  A native build would also enable AMX, whose
# kernel crashes on the first decode on CPUs (or VMs) that report AMX.
# Every build carries ggml's RPC backend (a few hundred kB): the target's layers can then
# live on another machine (`tandem rpc-server` there, Settings → Remote devices here).
RPC_FLAG = "-DGGML_RPC=ON"

X86_FLAG_FOR_FEATURE = {
    "avx": "GGML_AVX",
    "avx2": "GGML_AVX2",
    "fma": "GGML_FMA",
    "f16c": "GGML_F16C",
    "bmi2": "GGML_BMI2",
    "avx512f": "GGML_AVX512",
    "avx512_vnni": "GGML_AVX512_VNNI",
    "avx512_bf16": "GGML_AVX512_BF16",
    "avx_vnni": "GGML_AVX_VNNI",
}


@dataclass(frozen=True)
class BuildChoice:
    backend: str  # "cpu", "cuda" or "metal"
    cmake_args: str
    reason: str

    @property
    def key(self) -> str:
        """Identifies a built wheel: same version and flags, same wheel."""
        text = f"{LLAMA_CPP_PYTHON_VERSION}|{self.cmake_args}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_features(cpuinfo: str | None = None) -> set[str]:
    """CPU feature flags as /proc/cpuinfo names them (empty off Linux)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def nvidia_gpu_present() -> bool:
    """A CUDA toolkit alone is not enough: machines with nvcc but no GPU exist."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return Path("/dev/nvidia0").exists()
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def choose_build(
    env: dict[str, str] | None = None,
    system: str | None = None,
    machine: str | None = None,
    features: set[str] | None = None,
    has_nvcc: bool | None = None,
    has_gpu: bool | None = None,
) -> BuildChoice:
    """Pick CMAKE_ARGS.  TANDEM_CMAKE_ARGS overrides everything; TANDEM_BACKEND
    (cpu, cuda, metal) overrides only the detection of the backend."""
    env = dict(os.environ) if env is None else env
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()

    if env.get("TANDEM_CMAKE_ARGS"):
        args = env["TANDEM_CMAKE_ARGS"]
        backend = "cuda" if "GGML_CUDA=on" in args else "metal" if "GGML_METAL=on" in args else "cpu"
        return BuildChoice(backend, args, "TANDEM_CMAKE_ARGS set")

    forced = env.get("TANDEM_BACKEND", "").strip().lower()
    if forced and forced not in ("cpu", "cuda", "metal"):
        raise ValueError(f"TANDEM_BACKEND must be cpu, cuda or metal, not {forced!r}")

    if forced == "metal" or (not forced and system == "Darwin" and machine == "arm64"):
        return BuildChoice("metal", f"-DGGML_METAL=on {RPC_FLAG}", "Apple Silicon" if not forced else "TANDEM_BACKEND")

    if has_nvcc is None:
        has_nvcc = shutil.which("nvcc") is not None or Path("/usr/local/cuda/bin/nvcc").exists()
    if forced == "cuda" or (not forced and has_nvcc and (has_gpu if has_gpu is not None else nvidia_gpu_present())):
        # Native CPU code is fine next to CUDA only where AMX is absent; keep it portable.
        cpu = _x86_cpu_args(features) if machine in ("x86_64", "amd64") else ""
        reason = "nvcc and an NVIDIA GPU found" if not forced else "TANDEM_BACKEND"
        # GGML_NATIVE=OFF (above) would also drop ggml's "native" CUDA architecture and
        # compile every kernel for a dozen GPU generations (several times the build time);
        # this build is for the GPU in this machine.
        args = f"-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=native {cpu} {RPC_FLAG}"
        return BuildChoice("cuda", " ".join(args.split()), reason)

    if machine in ("x86_64", "amd64"):
        return BuildChoice("cpu", f"{_x86_cpu_args(features)} {RPC_FLAG}", "x86 CPU: portable SIMD build, no AMX")
    return BuildChoice("cpu", RPC_FLAG, f"{machine} CPU: llama.cpp defaults")


def _x86_cpu_args(features: set[str] | None) -> str:
    feats = cpu_features() if features is None else features
    flags = ["-DGGML_NATIVE=OFF"]
    for feature, flag in X86_FLAG_FOR_FEATURE.items():
        if feature in feats:
            flags.append(f"-D{flag}=ON")
    return " ".join(flags)


def cpu_reports_amx(features: set[str] | None = None) -> bool:
    feats = cpu_features() if features is None else features
    return any(f.startswith("amx") for f in feats)
