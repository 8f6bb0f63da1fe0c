"""`tandem serve`: the OpenAI-compatible API on this machine, for editors and scripts.

Loads the pair as `tandem generate` does (same flags; they are the defaults for what a
request leaves out), measures this machine once, then answers requests one at a time
until Ctrl-C or SIGTERM, which cancel what is generating and exit cleanly.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from engine.api.jobs import Backend
from engine.api.serve import DEFAULT_HOST, DEFAULT_PORT, HttpServer, require_stack
from engine.cli.common import add_generation_args, add_model_args, generation_settings, open_engine
from engine.runtime.api_jobs import JobWorker, model_info

KEY_ENV = "TANDEM_API_KEY"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve an OpenAI-compatible API on this machine (editors, scripts)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this computer only; "
                        "0.0.0.0 lets the network in)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument("--api-key", default=os.environ.get(KEY_ENV) or None,
                   help=f"require 'Authorization: Bearer KEY' on every request (default: ${KEY_ENV} if set)")
    add_model_args(p)
    add_generation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="[tandem serve] %(message)s", stream=sys.stderr)
    require_stack()
    settings = generation_settings(args)
    engine = open_engine(args, settings)
    try:
        print("[measuring this machine's decode speed (cached after the first time)]", file=sys.stderr)
        engine.cost_model()
        engine.baseline_tps()
        worker = JobWorker(engine)
        info = model_info(engine)
        backend = Backend(submit=worker.submit, model=lambda: info, defaults=lambda: settings)
        server = HttpServer(backend, args.host, args.port, args.api_key)
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            url = server.start()
            # the one line on stdout: scripts (and the tests) read the address from it
            print(f"Tandem serves {info.id} (speculation {settings.spec.mode}) at {url}/v1", flush=True)
            while not stop.wait(0.5):
                pass
            print("[stopping: cancelling what is generating]", file=sys.stderr)
        finally:
            server.stop()
            worker.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        engine.knowledge.save()
    finally:
        engine.close()
    print("[stopped]", file=sys.stderr)
    return 0
