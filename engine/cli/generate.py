"""`tandem generate`: one prompt, streamed to the terminal."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from engine.cli.common import add_generation_args, add_model_args, generation_settings, open_engine
from engine.cli.report import coloured, legend, summary, use_colour
from engine.decoding.events import DoneEvent, NoticeEvent, TextEvent
from engine.errors import TandemError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate a reply to one prompt")
    p.add_argument("--prompt", help="the user message (or use --prompt-file, or stdin)")
    p.add_argument("--prompt-file", help="read the user message from this file")
    p.add_argument("--system", help="system prompt")
    p.add_argument("--raw", action="store_true", help="complete the text as is, without the chat template")
    p.add_argument("--stats", choices=["text", "json"], default="text", help="json: print one JSON object")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto", help="colour tokens by provenance")
    add_model_args(p)
    add_generation_args(p)
    p.set_defaults(func=run)


def read_prompt(args: argparse.Namespace) -> str:
    if args.prompt is not None:
        return args.prompt
    if args.prompt_file:
        try:
            with open(args.prompt_file, encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise TandemError(f"cannot read prompt file: {exc}") from exc
    if sys.stdin.isatty():
        raise TandemError("give a prompt with --prompt, --prompt-file or on standard input")
    return sys.stdin.read()


def run(args: argparse.Namespace) -> int:
    settings = generation_settings(args)
    text = read_prompt(args)
    engine = open_engine(args, settings)
    as_json = args.stats == "json"
    colour = not as_json and use_colour(args.color)
    cancel = threading.Event()

    def on_event(event: object) -> None:
        if as_json:
            return
        if isinstance(event, TextEvent):
            sys.stdout.write("".join(coloured(t, s, colour) for t, s in event.pieces))
            sys.stdout.flush()
        elif isinstance(event, NoticeEvent):
            print(f"\n[{event.message}]", file=sys.stderr)
        elif isinstance(event, DoneEvent):
            sys.stdout.write("\n")

    try:
        if args.raw:
            prompt = engine.target_model.tokenize(text, add_special=True, parse_special=False)
            reply = engine.generate_tokens(prompt, settings, cancel=cancel, on_event=on_event)
        else:
            messages = ([{"role": "system", "content": args.system}] if args.system else [])
            messages.append({"role": "user", "content": text})
            reply = engine.reply(messages, settings, cancel=cancel, on_event=on_event)
    except KeyboardInterrupt:
        cancel.set()
        raise
    stats = reply.stats.snapshot()
    if as_json:
        print(json.dumps({"text": reply.text, "reason": reply.reason, "tokens": reply.tokens,
                          "sources": reply.sources, "stats": stats}))
    else:
        if colour:
            print(legend(colour), file=sys.stderr)
        print(summary(stats), file=sys.stderr)
    engine.close()
    return 0
