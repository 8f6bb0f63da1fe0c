"""`tandem doctor`: what this installation can do, and whether it works."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

from engine.models import paths


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the installation: backend, CPU features, models, a decode")
    p.add_argument("--no-hash", action="store_true", help="skip checksum verification of model files")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.llama import hugepages
    from engine.llama.backend import default_threads, needs_amx_fallback, supports_gpu_offload, system_info
    from engine.llama.build_flags import cpu_features, cpu_reports_amx
    from engine.models import catalog, provision

    ok = True
    build = Path(__import__("sys").prefix) / "tandem-build.txt"
    compiled = build.read_text().split("\n")[:2] if build.exists() else ["unknown", ""]
    info = system_info()
    print(f"platform        {platform.system()} {platform.machine()}, Python {platform.python_version()}")
    print(f"llama.cpp build {compiled[0]}  CMAKE_ARGS: {compiled[1] or '(defaults)'}")
    print(f"backend         {info.strip()}")
    used = sorted(f for f in cpu_features() if f in ("avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512_vnni",
                                                      "avx512_bf16", "avx_vnni") or f.startswith("amx"))
    print(f"CPU features    {' '.join(used) or 'n/a'}" + ("  (AMX reported)" if cpu_reports_amx() else ""))
    print(f"AMX fallback    {'on: loading without repacked weights' if needs_amx_fallback() else 'not needed'}")
    print(f"threads         {default_threads()} (physical cores)")
    print(f"huge pages      {hugepages.status()}")
    print(f"GPU offload     {'available' if supports_gpu_offload() else 'not available in this build'}")
    print(f"data dir        {paths.data_dir()}")
    print(f"models dir      {paths.models_dir()}")

    pair = catalog.default_pair()
    for model_id in (pair.target, pair.draft):
        path = provision.local_path(model_id)
        if path is None:
            print(f"model           {model_id}: MISSING (run `tandem models pull {model_id}`)")
            ok = False
            continue
        if args.no_hash:
            print(f"model           {model_id}: {path}")
            continue
        result = provision.verify(model_id)
        print(f"model           {model_id}: {path} sha256 {'OK' if result.ok else 'MISMATCH'}")
        ok = ok and result.ok

    target = provision.local_path(pair.target)
    if target is not None:
        ok = smoke_test(target) and ok
    print("doctor: all good" if ok else "doctor: problems found (see above)")
    return 0 if ok else 1


def smoke_test(path: Path) -> bool:
    from engine.llama.backend import LlamaContext, LlamaModel

    try:
        start = time.perf_counter()
        model = LlamaModel(path)
        ctx = LlamaContext(model, n_ctx=256, n_seq_max=2)
        tokens = model.tokenize("The capital of France is")
        ctx.decode(tokens, list(range(len(tokens))), [[0]] * len(tokens), [False] * (len(tokens) - 1) + [True])
        t0 = time.perf_counter()
        logits = ctx.decode([int(tokens[-1])], [len(tokens)], [[0]], [True])
        dt = time.perf_counter() - t0
        top = int(logits[0].argmax())
        print(f"decode test     OK: loaded in {t0 - start:.1f}s, one token in {1000 * dt:.0f} ms, "
              f"next token {model.token_bytes(top).decode('utf-8', 'replace')!r}")
        ctx.close()
        model.close()
        return True
    except Exception as exc:  # doctor reports, never crashes
        print(f"decode test     FAILED: {exc}")
        return False
