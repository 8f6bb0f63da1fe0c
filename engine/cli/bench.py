"""`tandem bench`: Tandem against plain decoding and llama.cpp's own speculation,
and the offline replay of speculation policies (issue 5 §1-2).

    tandem bench                          # our suite, every arm, 256 tokens -> bench-results/<time>/
    tandem bench --quick                  # one prompt per category, 128 tokens, a few arms (< 10 min)
    tandem bench --suite humaneval --max-prompts 20
    tandem bench --suite ours,revision    # our suite and the revision suite (multi-turn: every turn is run)
    tandem bench --arms plain chain:n_max=3 auto --peer-llama-cpp "$(scripts/build_peer_llama.sh | tail -1)"
    tandem bench --record                 # traces of the target's replies -> ceiling table
    tandem bench --replay TRACE_DIR       # replay policies on saved traces, in seconds
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from engine.cli.common import add_model_args, load_settings
from engine.errors import TandemError

QUICK_ARMS = ("plain", "chain", "ngram", "auto", "lcp-lookup")  # staged: slowest today; auto covers it
FULL_ARMS = ("plain", "chain", "tree", "c2t", "ngram", "staged", "auto", "lcp-lookup")
QUICK_PEER_ARMS = ("llama.cpp", "llama.cpp-draft", "llama.cpp-ngram", "llama.cpp-ngram:type=ngram-mod")
NEEDS_DRAFT = ("chain", "tree", "c2t", "staged", "llama.cpp-draft")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark speculation against plain decoding (and llama.cpp)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("prompts")
    g.add_argument("--suite", default="ours",
                   help="ours (default), revision (paste code or a document, ask for it back changed), humaneval, "
                        "or a MT-bench style .jsonl path (every turn is run); join several with commas")
    g.add_argument("--categories", nargs="+", metavar="CAT", help="only these categories")
    g.add_argument("--prompts", nargs="+", metavar="ID", help="only these question ids")
    g.add_argument("--max-prompts", type=int, help="at most this many prompts")
    g.add_argument("--quick", action="store_true",
                   help=f"one prompt per category, 128 tokens, arms {' '.join(QUICK_ARMS)}")
    r = p.add_argument_group("runs")
    r.add_argument("--arms", nargs="+", metavar="ARM",
                   help="kind[:key=value,...]; kinds: plain, chain, tree, c2t, ngram, staged, auto, lcp-lookup, "
                        "llama.cpp, llama.cpp-draft, llama.cpp-ngram[:type=ngram-mod|ngram-map-k|...] "
                        "(default: all that apply)")
    r.add_argument("--max-tokens", type=int, help="new tokens per reply, every arm (default 256; --quick 128)")
    r.add_argument("--repeat", type=int, default=1, metavar="N",
                   help="run every (prompt, arm) N times, rotating the order, and keep the fastest: "
                        "on a machine shared with other work, contention only ever adds time")
    r.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default; outputs are then checked)")
    r.add_argument("--seed", type=int)
    r.add_argument("--peer-llama-cpp", type=Path, metavar="DIR",
                   help="directory with llama-completion and llama-speculative-simple (scripts/build_peer_llama.sh)")
    r.add_argument("--knowledge", choices=["fresh", "user"], default="fresh",
                   help="fresh (default): learned acceptance starts from priors and is not saved; "
                        "user: start from and update what this pair learned in the app")
    r.add_argument("--remeasure", action="store_true",
                   help="measure the decode-cost curve and plain baseline again (the engine caches them; `auto` "
                        "sizes its trees from the curve, so a curve measured on a busy machine misleads it)")
    r.add_argument("--out", type=Path, help="output directory (default bench-results/<time>/)")
    r.add_argument("--rebuild", type=Path, metavar="DIR",
                   help="re-check outputs and rewrite results.md and chart.png from DIR/results.json (no runs)")
    t = p.add_argument_group("replay")
    t.add_argument("--record", action="store_true", help="record traces of the target's greedy replies")
    t.add_argument("--top-k", type=int, default=8, help="draft top-k kept per position when recording")
    t.add_argument("--replay", type=Path, metavar="TRACE_DIR", help="replay policies on recorded traces")
    t.add_argument("--policies", nargs="+", metavar="MODULE:FUNC", default=[],
                   help="extra replay policies: a function returning a list of policy objects")
    t.add_argument("--costs", metavar="design|measure|FILE",
                   help="replay with other decode-cost curves than the recorded ones: `design` (DESIGN §2 "
                        "table), `measure` (measure now with the loaded pair, saved beside the traces) or a JSON "
                        "file (another trace's meta.json works)")
    t.add_argument("--overhead-ms", type=float, default=0.0, help="engine overhead charged per step in the replay")
    add_model_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.rebuild is not None:
        return run_rebuild(args)
    if args.replay is not None:
        return run_replay(args)
    if args.record:
        return run_record(args)
    return run_benchmark(args)


# ---------------------------------------------------------------- benchmark


def chosen_prompts(args: argparse.Namespace, quick: bool):
    from engine.bench.suites import load_suite, select

    return select(load_suite(args.suite), per_category=1 if quick else None, categories=args.categories,
                  ids=args.prompts, max_prompts=args.max_prompts)


def chosen_arms(args: argparse.Namespace):
    from engine.bench.peer_arm import DEFAULT_PEER_ARMS
    from engine.bench.results import ArmSpec

    if args.arms:
        names = list(args.arms)
    else:
        names = list(QUICK_ARMS if args.quick else FULL_ARMS)
        if args.peer_llama_cpp is not None:
            names += QUICK_PEER_ARMS if args.quick else DEFAULT_PEER_ARMS
    if args.draft is not None and args.draft.lower() == "none" and not args.arms:
        names = [n for n in names if n.split(":")[0] not in NEEDS_DRAFT]
    return [ArmSpec.parse(n) for n in names]


def open_bench_engine(args: argparse.Namespace):
    from engine.drafters import PairKnowledge
    from engine.runtime.session import Engine

    engine = Engine(load_settings(args, need_draft=True), require_compatible_draft=False)
    if args.knowledge == "fresh":
        engine.knowledge = PairKnowledge(None)  # in memory only: runs are reproducible, the app's data untouched
    # No speculation history: an arm would copy the reply an earlier arm gave to the same
    # prompt, and the bench's replies do not belong in the user's history.
    engine.use_history(None)
    return engine


def run_benchmark(args: argparse.Namespace) -> int:
    from engine.bench.equivalence import MISMATCH
    from engine.bench.machine import load_average, machine_info
    from engine.bench.output import default_out_dir, write_results
    from engine.bench.peer_arm import PEER_KINDS
    from engine.bench.runner import LOOKUP_KIND, BenchOptions, check_arms, run_bench

    quick = args.quick
    max_tokens = args.max_tokens or (128 if quick else 256)
    prompts = chosen_prompts(args, quick)
    arms = chosen_arms(args)
    peer = args.peer_llama_cpp.expanduser().resolve() if args.peer_llama_cpp else None
    opts = BenchOptions(max_tokens=max_tokens, temperature=args.temperature, seed=args.seed, peer_dir=peer,
                        repeats=args.repeat)
    check_arms(arms, opts)
    out = args.out or default_out_dir()
    engine = open_bench_engine(args)
    try:
        from engine.bench.costs import describe

        if args.remeasure:
            engine.cost_model(remeasure=True)
            engine.baseline_tps(remeasure=True)
        costs = engine.cost_model()
        print(f"tandem bench: decode cost the engine uses (ms, target/draft): {describe(costs)}", file=sys.stderr)
        config = {"suite": args.suite, "arms": [a.name for a in arms], "prompts": [p.id for p in prompts],
                  "max_tokens": max_tokens, "repeat": args.repeat, "temperature": args.temperature,
                  "seed": args.seed, "quick": quick,
                  "knowledge": args.knowledge, "peer_llama_cpp": str(peer) if peer else None,
                  "n_ctx": engine.target.n_ctx, "command": sys.argv[1:],
                  "cost_curves": {"target": costs.target.to_dict(),
                                  "draft": costs.draft.to_dict() if costs.draft else None},
                  "cost_summary_ms": describe(costs), "baseline_tps": engine.baseline_tps()}
        machine = machine_info(threads=engine.threads, target=engine.load_settings.target,
                               draft=engine.load_settings.draft if engine.draft is not None else None)
        load = machine.get("load_average_at_start")
        if load and load[0] > 0.5 * (machine.get("logical_cpus") or 1):
            print(f"tandem bench: WARNING: load average {load[0]} on {machine.get('logical_cpus')} CPUs: other "
                  "processes are running, timings will be noisy (see the CPU share column)", file=sys.stderr)
        if engine.draft_problem:
            print(f"tandem bench: the draft cannot be used: {engine.draft_problem}", file=sys.stderr)
        print(f"tandem bench: {len(prompts)} prompts × {len(arms)} arms, {max_tokens} tokens -> {out}",
              file=sys.stderr)
        runs = run_bench(engine, prompts, arms, opts)
        machine["load_average_at_end"] = load_average()
        # every check of the curves against live decodes, and any new measurement it caused
        config["cost_checks"] = list(engine.cost_log)
        if engine.costs_in_use is not costs:
            config["cost_summary_ms_at_end"] = describe(engine.costs_in_use)
    finally:
        engine.close()
    md = write_results(out, runs, config, machine)
    print(md)
    print(f"\nresults: {out}/results.md, results.json, chart.png", file=sys.stderr)
    from engine.cli.models import optimize_offer

    offer = optimize_offer(engine.load_settings.draft)
    if offer:
        print(offer, file=sys.stderr)
    external = (LOOKUP_KIND, *PEER_KINDS)
    bad = [r for r in runs if r.check and r.check["status"] == MISMATCH]
    if bad:
        print(f"\n!!! {len(bad)} run(s) differ from plain decoding beyond a near-tie: see 'Equivalence' above",
              file=sys.stderr)
    # Tandem changing the target's output is a bug; llama.cpp's or llama-cpp-python's is only reported.
    ours = [r for r in bad if r.arm.split(":")[0] not in external]
    return 1 if ours else 0


def run_rebuild(args: argparse.Namespace) -> int:
    """Tables, chart and equivalence verdicts again from the raw runs (e.g. after a
    change to the comparison rules); needs only the target's vocabulary."""
    from engine.bench.equivalence import check_runs
    from engine.bench.output import RESULTS_JSON, read_runs, write_results
    from engine.llama.backend import LlamaModel

    src = args.rebuild / RESULTS_JSON
    if not src.is_file():
        raise TandemError(f"{src} not found")
    runs, config, machine = read_runs(src)
    vocab = LlamaModel((machine.get("target") or {}).get("path") or load_settings(args, need_draft=False).target,
                       vocab_only=True)
    try:
        for pid in dict.fromkeys(r.prompt_id for r in runs):
            check_runs([r for r in runs if r.prompt_id == pid], vocab, greedy=not config.get("temperature"))
    finally:
        vocab.close()
    print(write_results(args.out or args.rebuild, runs, config, machine))
    return 0


# ---------------------------------------------------------------- replay


def run_record(args: argparse.Namespace) -> int:
    from engine.bench.machine import machine_info
    from engine.bench.output import default_out_dir
    from engine.bench.record import record

    max_tokens = args.max_tokens or 256
    prompts = chosen_prompts(args, args.quick)
    out = args.out or default_out_dir("trace")
    engine = open_bench_engine(args)
    try:
        meta = {"machine": machine_info(threads=engine.threads, target=engine.load_settings.target,
                                        draft=engine.load_settings.draft), "suite": args.suite}
        traces = record(engine, prompts, max_tokens=max_tokens, top_k=args.top_k, meta=meta,
                        log=lambda s: print(s, file=sys.stderr, flush=True))
    finally:
        engine.close()
    traces.save(out)
    print(f"traces: {out}", file=sys.stderr)
    return _replay_and_write(traces, out, args)


def run_replay(args: argparse.Namespace) -> int:
    from engine.bench.trace import TraceSet

    traces = TraceSet.load(args.replay)
    if args.costs == "measure":
        traces.costs = measure_costs(args, args.out or args.replay)
    elif args.costs:
        from engine.bench.costs import load_costs

        traces.costs = load_costs(args.costs)
    return _replay_and_write(traces, args.out or args.replay, args)


def measure_costs(args: argparse.Namespace, out: Path):
    """Measure the curves now (contention-filtered) with the loaded pair, and keep them beside the traces."""
    from datetime import datetime

    from engine.bench.costs import describe
    from engine.bench.machine import load_average

    engine = open_bench_engine(args)
    try:
        costs = engine.cost_model(remeasure=True)
    finally:
        engine.close()
    print(f"decode cost (ms, target/draft): {describe(costs)}", file=sys.stderr)
    path = out / f"costs-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"target": costs.target.to_dict(), "draft": costs.draft.to_dict(),
                                "load_average": load_average()}, indent=1))
    print(f"cost curves: {path} (replay with --costs {path})", file=sys.stderr)
    args.costs = str(path)
    return costs


def load_policies(specs: list[str]) -> list:
    from engine.bench.policies import default_policies

    policies = list(default_policies())
    for spec in specs:
        module, _, func = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module), func or "policies")
        except (ImportError, AttributeError) as exc:
            raise TandemError(f"--policies {spec}: {exc}") from exc
        policies.extend(factory())
    return policies


def _replay_and_write(traces, out: Path, args: argparse.Namespace) -> int:
    from engine.bench.replay_report import run_replay as replay

    md, data = replay(traces, load_policies(args.policies), overhead=args.overhead_ms / 1e3)
    costs = getattr(args, "costs", None)
    if costs:
        md = md.replace("# Replay: where the speed is", f"# Replay: where the speed is (cost curves: {costs})", 1)
    # a replay with borrowed cost curves must not overwrite the trace's own
    name = "replay" if not costs else f"replay-costs-{Path(costs).stem}"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.md").write_text(md, encoding="utf-8")
    (out / f"{name}.json").write_text(json.dumps(data, indent=1), encoding="utf-8")
    print(md)
    print(f"replay: {out}/{name}.md, {name}.json", file=sys.stderr)
    return 0
