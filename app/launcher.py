"""The `tandem` command: no arguments opens the desktop app, anything else is the CLI."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    started = argv is None  # this process's real start, not a call from a test or script
    argv = sys.argv[1:] if argv is None else argv
    if started and argv and (not argv[0].startswith("-") or argv[0] in ("--self-test", "--engine-server")):
        # a process that decodes reads every weight per token: give it huge pages (engine/llama/hugepages.py)
        from engine.llama.hugepages import reexec_with_huge_pages

        reexec_with_huge_pages()
    if argv and argv[0] == "--engine-server":
        # The GUI starts its engine process this way when frozen (no `python -m`).
        from engine.runtime.server import main as server_main

        return server_main()
    if argv and argv[0] == "--llama-probe":
        # A trial load of an untrusted model file in a throwaway process (engine/llama/load_guard.py).
        from engine.llama.load_guard import child_main

        return child_main(argv[1:])
    if argv and argv[0] == "--self-test":
        # Headless check of an install (packaging runs it offscreen); see app/self_test.py.
        from app.self_test import main as self_test_main

        return self_test_main(argv[1:])
    if argv and (argv[0] in ("-h", "--help") or not argv[0].startswith("-")):
        from engine.cli.main import main as cli_main

        return cli_main(argv)
    from app.main import run_app

    return run_app([a for a in argv if a != "--gui"])


if __name__ == "__main__":
    sys.exit(main())
