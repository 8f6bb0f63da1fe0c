"""`tandem rpc-server`: lend this machine's GPU (or CPU) to Tandem on another computer.

A thin launcher over ggml's own RPC server from the llama.cpp Tandem runs on, so the
protocol always matches a Tandem of the same version.  It has no authentication: it
binds to 127.0.0.1 unless told otherwise, and warns when it is not.
"""

from __future__ import annotations

import argparse
import socket
import sys

from engine.llama.rpc import DEFAULT_PORT, is_loopback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rpc-server",
        help="serve this machine's GPU/CPU to the target of a Tandem on another machine (trusted networks only)",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every network)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--threads", type=int, help="CPU threads when serving the CPU (default: physical cores)")
    p.add_argument("--cache", metavar="DIR", help="keep received weights here, so a restarted client loads faster")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.llama.backend import default_threads, init_backend
    from engine.llama.rpc import serve

    init_backend()
    threads = args.threads or default_threads()
    if is_loopback(args.host):
        reach = f"{args.host}:{args.port}"
        print(f"tandem rpc-server on {reach} (this machine only; `--host 0.0.0.0` to serve a network)", file=sys.stderr)
    else:
        name = socket.gethostname()
        reach = f"{name if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
        print(f"WARNING: listening on {args.host}:{args.port} with NO authentication: anyone who can reach this "
              "port can run computations here. Use it only on a trusted network.", file=sys.stderr)
    print(f"On the other machine:  tandem generate --rpc {reach} --prompt \"...\"   "
          f"(or Settings → Remote devices: {reach})", file=sys.stderr, flush=True)
    serve(args.host, args.port, threads, args.cache)
    return 0
