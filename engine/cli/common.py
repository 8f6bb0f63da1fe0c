"""Options shared by `generate`, `chat` and `bench`, and turning them into an Engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.errors import ModelFileError
from engine.llama.rpc import parse_endpoints
from engine.settings import DRAW_RULES, SPEC_MODES, VERIFY_RULES, GenerationSettings, LoadSettings, SpecSettings


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("models")
    g.add_argument("--target", help="target model: a catalog id or a GGUF path (default: the default pair)")
    g.add_argument("--draft", help="draft model: a catalog id, a GGUF path, or 'none' (default: the default pair)")
    g.add_argument("--ctx", type=int, default=4096, help="context size in tokens (default 4096)")
    g.add_argument("--threads", type=int, help="CPU threads (default: physical cores)")
    g.add_argument("--gpu-layers", type=int, default=0, help="target layers offloaded to the GPU")
    g.add_argument("--draft-gpu-layers", type=int, default=0, help="draft layers offloaded to the GPU")
    g.add_argument("--rpc", metavar="HOST:PORT[,HOST:PORT]",
                   help="put the target's layers on these `tandem rpc-server`s (trusted network only); "
                        "the draft stays here")


def add_generation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("generation")
    g.add_argument("--max-tokens", type=int, default=512)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=40)
    g.add_argument("--top-p", type=float, default=0.95)
    g.add_argument("--seed", type=int)
    s = p.add_argument_group("speculation")
    s.add_argument("--spec", choices=SPEC_MODES, default="auto", help="drafter (default auto)")
    defaults = SpecSettings()
    s.add_argument("--n-max", type=int, default=defaults.n_max, help="chain: most drafted tokens per step")
    s.add_argument("--p-min", type=float, default=defaults.p_min, help="chain: stop below this draft probability")
    s.add_argument("--budget", type=int, default=defaults.budget, help="most candidates verified per step")
    s.add_argument("--top-k-children", type=int, default=defaults.top_k_children, help="tree: children per node")
    s.add_argument("--beam", type=int, default=defaults.beam, help="tree: nodes expanded per level")
    s.add_argument("--max-depth", type=int, default=defaults.max_depth, help="tree: deepest draft level")
    s.add_argument("--verify", choices=VERIFY_RULES, default=defaults.verify,
                   help="sampling: traversal (arXiv 2505.12398), token (top-down SpecInfer/Sequoia), "
                        "auto = traversal on sampled trees (default)")
    s.add_argument("--draws", choices=DRAW_RULES, default=defaults.draws,
                   help="sampling: tree children drawn from the draft without (default) or with replacement")


def generation_settings(args: argparse.Namespace) -> GenerationSettings:
    spec = SpecSettings(
        mode=args.spec, n_max=args.n_max, p_min=args.p_min, budget=args.budget,
        top_k_children=args.top_k_children, beam=args.beam, max_depth=args.max_depth,
        verify=args.verify, draws=args.draws,
    )
    return GenerationSettings(
        max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k,
        top_p=args.top_p, seed=args.seed, spec=spec,
    )


def resolve_model(arg: str | None, role: str) -> str | None:
    """A path stays a path; a catalog id becomes its downloaded file."""
    from engine.models import catalog, provision
    if arg is None:
        pair = catalog.default_pair()
        arg = pair.target if role == "target" else pair.draft
    if arg.lower() == "none":
        return None
    path = Path(arg).expanduser()
    if path.exists() or path.suffix == ".gguf" or "/" in arg or "\\" in arg:
        if not path.exists():
            raise ModelFileError(f"model file not found: {path}")
        return str(path)
    local = provision.local_path(arg)
    if local is None:
        catalog.get(arg)  # unknown id: says which ids exist
        raise ModelFileError(f"model {arg} is not downloaded yet: run `tandem models pull {arg}`")
    return str(local)


def load_settings(args: argparse.Namespace, *, need_draft: bool) -> LoadSettings:
    target = resolve_model(args.target, "target")
    draft = resolve_model(args.draft, "draft") if need_draft else None
    return LoadSettings(
        target=target, draft=draft, n_ctx=args.ctx, threads=args.threads,
        gpu_layers=args.gpu_layers, draft_gpu_layers=args.draft_gpu_layers, rpc=parse_endpoints(args.rpc),
    )


def open_engine(args: argparse.Namespace, settings: GenerationSettings):
    from engine.runtime.session import Engine

    need_draft = settings.spec.uses_draft_model
    load = load_settings(args, need_draft=need_draft)
    # `auto` speculates with the n-gram stage alone when the draft does not fit
    engine = Engine(load, require_compatible_draft=settings.spec.mode != "auto")
    for notice in engine.notices:
        print(f"[{notice}]", file=sys.stderr)
    return engine
