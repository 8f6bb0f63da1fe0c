"""Tandem's own arms: plain decoding (`--spec off`) and every speculation mode,
driven through Engine.generate_tokens exactly as the app drives it.

Each run starts from empty caches.  The bench prefills the target (and, for
modes that use it, the draft) itself and times that as prompt processing; the
generation loop then finds the prompt cached and measures generation only.
Time inside llama_decode is added up by wrapping each context's `decode` on the
instance, so "engine overhead per step" (time outside every decode, per target
pass) needs no change to the engine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.bench.results import ArmSpec, RunResult
from engine.bench.sol import measure_target
from engine.bench.suites import BenchPrompt
from engine.errors import TandemError
from engine.settings import SPEC_MODES, GenerationSettings, SpecSettings

ENGINE_KINDS = ("plain", *(m for m in SPEC_MODES if m != "off"))


class DecodeTimer:
    """Seconds spent inside `decode` of the given llama contexts since `reset()`."""

    def __init__(self, *contexts: object) -> None:
        self.seconds = 0.0
        self.calls = 0
        self._wrapped = []
        for ctx in contexts:
            if ctx is None:
                continue
            inner = ctx.decode
            ctx.decode = self._wrap(inner)  # instance attribute shadows the method
            self._wrapped.append(ctx)

    def _wrap(self, inner: Callable) -> Callable:
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1

        return timed

    def reset(self) -> None:
        self.seconds = 0.0
        self.calls = 0

    def close(self) -> None:
        for ctx in self._wrapped:
            del ctx.decode
        self._wrapped.clear()


def settings_for(spec: ArmSpec, max_tokens: int, temperature: float, seed: int | None) -> GenerationSettings:
    mode = "off" if spec.kind == "plain" else spec.kind
    fields = SpecSettings.__dataclass_fields__
    kw: dict[str, object] = {}
    for key, value in spec.params.items():
        if key not in fields or key == "mode":
            raise TandemError(f"arm {spec.name}: unknown setting {key!r} (known: {', '.join(sorted(fields))})")
        kw[key] = type(getattr(SpecSettings(), key))(value)
    return GenerationSettings(max_tokens=max_tokens, temperature=temperature, seed=seed,
                              spec=SpecSettings(mode=mode, **kw))


class EngineArms:
    """Runs Tandem arms on one loaded Engine."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.timer = DecodeTimer(engine.target.ctx, engine.draft.ctx if engine.draft is not None else None)

    def run(
        self, spec: ArmSpec, prompt: BenchPrompt, tokens: list[int], *,
        max_tokens: int, temperature: float = 0.0, seed: int | None = None, record_margins: bool = False,
    ) -> RunResult:
        engine = self.engine
        settings = settings_for(spec, max_tokens, temperature, seed)
        result = RunResult(spec.name, prompt.id, prompt.category, prompt_tokens=len(tokens))
        start = time.perf_counter()
        try:
            # If live timings drifted from the cost curve, check it now, before the prefill
            # (a check inside generate_tokens would empty the caches again).
            engine.cost_model()
            # Empty caches: every arm processes the whole prompt, measured the same way.
            engine.target.truncate(0)
            if engine.draft is not None:
                engine.draft.truncate(0)
            t0 = time.perf_counter()
            head = tokens[:-1]
            prefill_tokens = 0
            if head:
                engine.target.decode(head)
                prefill_tokens += len(head)
                if settings.spec.uses_draft_model and engine.draft is not None:
                    engine.draft.decode(head)
                    prefill_tokens += len(head)
            result.t_prefill = time.perf_counter() - t0
            result.prefill_tokens = prefill_tokens
            self.timer.reset()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            reply = engine.generate_tokens(tokens, settings, record_margins=record_margins)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        except Exception as exc:  # an arm's failure is a result, never the end of the benchmark
            result.error = f"crashed: {type(exc).__name__}: {exc}"
            result.wall = time.perf_counter() - start
            return result
        s = reply.stats
        snap = s.snapshot()
        result.tokens = list(reply.tokens)
        result.text = reply.text
        result.n_tokens = s.tokens
        result.t_generate = s.t_generate
        result.steps = s.steps
        result.t_draft, result.t_verify, result.t_overhead = s.t_draft, s.t_verify, s.t_overhead
        result.t_decode = self.timer.seconds
        result.drafted = sum(snap["drafted"].values())
        result.tested = sum(snap["tested"].values())
        result.accepted = sum(snap["accepted"].values())
        result.margins = list(reply.margins) if record_margins else None
        result.stats = snap
        result.extra = {"settings": settings.to_dict(), "reason": reply.reason, "decode_calls": self.timer.calls,
                        "engine_prefill_tokens": s.prefill_tokens}
        result.cpu_share = cpu / (wall * engine.threads) if wall > 0 else None
        if spec.kind == "plain" and not settings.sampling.greedy and reply.tokens:
            # the target's own distribution statistics, for the speed-of-light bound (engine.bench.sol);
            # measured after the timed generation, so they cost the arm nothing
            try:
                result.extra["target_stats"] = measure_target(engine.target, tokens, reply.tokens, settings.sampling)
            except Exception as exc:  # the bound is a report, never the end of a run
                result.extra["target_stats_error"] = f"{type(exc).__name__}: {exc}"
        result.wall = time.perf_counter() - start
        return result

    def close(self) -> None:
        self.timer.close()
