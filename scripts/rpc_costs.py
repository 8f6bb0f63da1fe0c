"""Decode cost of the target on this machine vs through ggml's RPC backend over loopback.

    .venv/bin/python scripts/rpc_costs.py [--target GGUF] [--sizes 1 2 4 8 16] [--reps 5]

Starts `tandem rpc-server` on a free 127.0.0.1 port, loads the target twice (all
layers local; all layers on the server), and times a decode of n tokens (a chain on
top of a 256-token context) for every size, the two placements interleaved so that
contention hits both alike.  Over loopback the difference is RPC's own overhead per
decode (serialising the graph, copying inputs and logits through a socket); over a
real network add the link's round trip.  Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    from engine.llama import rpc
    from engine.llama.backend import LlamaContext, LlamaModel, default_threads
    from engine.llama.lm import TIP, LlamaLM
    from engine.models import catalog, provision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", help="GGUF path (default: the default pair's target)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    target = args.target or str(provision.local_path(catalog.default_pair().target))
    threads = default_threads()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "engine.cli.main", "rpc-server", "--port", str(port),
                               "--threads", str(threads)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            time.sleep(0.1)
        remote = rpc.RemoteDevices([f"127.0.0.1:{port}"])
        lms = {
            "local": LlamaLM(m := LlamaModel(target), LlamaContext(m, n_ctx=1024, n_threads=threads, n_seq_max=16)),
            "remote": LlamaLM(r := LlamaModel(target, n_gpu_layers=10_000, devices=remote.device_array()),
                              LlamaContext(r, n_ctx=1024, n_threads=threads, n_seq_max=16)),
        }
        prompt = [(i * 7919) % 1000 + 100 for i in range(256)]
        for lm in lms.values():
            lm.decode(prompt)
        times: dict[str, dict[int, list[float]]] = {k: {n: [] for n in args.sizes} for k in lms}
        for _ in range(args.reps):
            for n in args.sizes:
                for where, lm in lms.items():
                    tokens = [(j * 31) % 1000 + 100 for j in range(n - 1)]
                    t0 = time.perf_counter()
                    lm.decode([prompt[-1]], [TIP, *range(n - 2)] if n > 1 else [], tokens)
                    times[where][n].append(time.perf_counter() - t0)
                    lm.discard()
                    lm.truncate(len(prompt))
        for lm in lms.values():  # while the server still answers: freeing remote buffers talks to it
            lm.ctx.close()
            lm.model.close()
    finally:
        server.kill()
        server.wait(10)
    cpu = os.getloadavg()[0]
    rows = {n: {w: 1000 * min(times[w][n]) for w in times} for n in args.sizes}
    print(f"| tokens in one decode | {' | '.join(str(n) for n in args.sizes)} |")
    print("|---|" + "---|" * len(args.sizes))
    for where in ("local", "remote"):
        cells = " | ".join(f"{rows[n][where]:.0f}" for n in args.sizes)
        print(f"| {where} (ms, best of {args.reps}) | {cells} |")
    cells = " | ".join(f"{rows[n]['remote'] - rows[n]['local']:.0f}" for n in args.sizes)
    print(f"| RPC overhead (ms) | {cells} |")
    print(json.dumps({"target": Path(target).name, "threads": threads, "load_average": cpu,
                      "ms_best": rows, "ms_median": {n: {w: 1000 * statistics.median(times[w][n]) for w in times}
                                                     for n in args.sizes}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
