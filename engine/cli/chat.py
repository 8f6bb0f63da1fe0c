"""`tandem chat`: a multi-turn chat in the terminal.

The conversation's tokens stay in the target's (and draft's) cache between
turns; each turn decodes only the new messages.
"""

from __future__ import annotations

import argparse
import sys
import threading

from engine.cli.common import add_generation_args, add_model_args, generation_settings, open_engine
from engine.cli.report import coloured, legend, summary, use_colour
from engine.decoding.events import NoticeEvent, TextEvent

HELP = "/exit quits, /reset starts a new conversation, /stats toggles statistics"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("chat", help="chat in the terminal")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour tokens by provenance")
    p.add_argument("--quiet-stats", action="store_true", help="do not print statistics after each reply")
    add_model_args(p)
    add_generation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = generation_settings(args)
    engine = open_engine(args, settings)
    colour = use_colour(args.color)
    show_stats = not args.quiet_stats
    system = [{"role": "system", "content": args.system}] if args.system else []
    messages = list(system)
    print(f"Tandem chat — {engine.target_model.path.name}"
          + (f" with draft {engine.draft_model.path.name}" if engine.draft_model else "")
          + f", speculation: {settings.spec.mode}.  {HELP}", file=sys.stderr)
    if colour:
        print(legend(colour), file=sys.stderr)

    def on_event(event: object) -> None:
        if isinstance(event, TextEvent):
            sys.stdout.write("".join(coloured(t, s, colour) for t, s in event.pieces))
            sys.stdout.flush()
        elif isinstance(event, NoticeEvent):
            print(f"\n[{event.message}]", file=sys.stderr)

    while True:
        try:
            line = input("\n> ")
        except EOFError:
            break
        except KeyboardInterrupt:
            print()
            break
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            messages = list(system)
            print("[new conversation]", file=sys.stderr)
            continue
        if text == "/stats":
            show_stats = not show_stats
            continue
        messages.append({"role": "user", "content": line})
        cancel = threading.Event()
        try:
            reply = engine.reply(messages, settings, cancel=cancel, on_event=on_event)
        except KeyboardInterrupt:
            # Ctrl+C stops this reply, not the chat; the cache stays consistent.
            cancel.set()
            print("\n[stopped]", file=sys.stderr)
            messages.pop()
            continue
        print()
        messages.append({"role": "assistant", "content": reply.text})
        if show_stats:
            print(summary(reply.stats.snapshot()), file=sys.stderr)
    engine.close()
    return 0
