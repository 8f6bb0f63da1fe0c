"""`tandem <command>`: the engine's command line.  Each command lives in its own
module with `register(subparsers)`; this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import TandemError

COMMANDS = {
    "generate": "engine.cli.generate",
    "chat": "engine.cli.chat",
    "models": "engine.cli.models",
    "doctor": "engine.cli.doctor",
    "bench": "engine.cli.bench",
    "rpc-server": "engine.cli.rpc_server",
    "serve": "engine.cli.serve",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tandem", description="Offline chat with staged speculative decoding.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for module in COMMANDS.values():
        try:
            importlib.import_module(module).register(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except TandemError as exc:
        print(f"tandem: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\ntandem: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
