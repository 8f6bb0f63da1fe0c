"""A loaded model pair that answers conversations: what the CLI, the engine
process and the benchmark drive.

Holds the target (and optionally the draft) with their caches, so a follow-up
turn only decodes the new messages (the shared prefix stays cached), the
measured decode costs, the plain-decoding baseline, what the pair has
learned about its own acceptance and the user's speculation history (earlier
prompts and replies, engine/drafters/history.py; kept on this computer only).

Over 400 lines on purpose: `Engine` is the one object every front end holds, and its
parts (loading, cost curve, baseline, warm start, history, a reply) each guard the same
caches and lock; the logic they call lives in decoding/, drafters/ and models/.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.decoding import costmodel
from engine.decoding.baseline import PlainEstimate
from engine.decoding.costmodel import CostCurve, CostModel
from engine.decoding.drafter import NoDrafter
from engine.decoding.events import Event, NoticeEvent
from engine.decoding.generate import Reply, generate
from engine.drafters import DraftModel, PairKnowledge, make_drafter
from engine.drafters.history import SpeculationHistory, forget_all, history_dir, new_part
from engine.errors import ContextOverflowError, IncompatiblePairError
from engine.llama import hugepages, rpc
from engine.llama.backend import LlamaContext, LlamaModel, default_threads, supports_gpu_offload, system_info
from engine.llama.chat_template import ChatTemplate
from engine.llama.lm import LlamaLM
from engine.llama.threads import ThreadGovernor
from engine.models import paths, resources
from engine.models.compat import check_pair, incompatibility
from engine.settings import GenerationSettings, LoadSettings

N_SEQ_MAX = 16
BASELINE_TOKENS = 16
BASELINE_RUNS = 3
BASELINE_ATTEMPTS = 3  # measurements of BASELINE_RUNS runs before giving up on a plausible one
BASELINE_PLAUSIBLE = 0.5  # of the decode-only speed 1 / cost(1 token)
# The last conversation's KV cache is saved after each reply at least this long and restored
# by the next engine, so a restart does not read the conversation again (about 200 tokens/s
# here: 3,200 tokens took 18-24 s; restoring them takes a fraction of a second).
WARM_MIN_TOKENS = 512
RECHECK_S = 120.0  # at most one drift check of the cost curve this often


class Engine:
    def __init__(self, load: LoadSettings, *, require_compatible_draft: bool = True, learn: bool = True) -> None:
        """`learn=False` keeps what the pair learns in memory only, saves no warm-start
        cache of the conversation and reads no speculation history (benchmarks, tests:
        an arm must not copy the reply an earlier arm gave to the same prompt)."""
        self.load_settings = load
        self.threads = load.threads or default_threads()
        self.notices: list[str] = []  # things the user should know about this load
        # before llama.cpp sees anything: an oversized request gets a message, not an OOM kill
        # remote devices first: an unreachable server is a message, never an abort in ggml
        self.remote = rpc.RemoteDevices(load.rpc) if load.rpc else None
        resources.check_fits(load.target, load.draft, load.n_ctx, target_remote=self.remote is not None)
        self.target_model = self._load(load.target, load.gpu_layers, "target", remote=self.remote)
        self.target = self._context(self.target_model, load.n_ctx)
        self.template = ChatTemplate(
            self.target_model.chat_template,
            bos_token=self.target_model.token_bytes(self.target_model.bos).decode("utf-8", "replace"),
            eos_token=self.target_model.token_bytes(self.target_model.eos).decode("utf-8", "replace"),
        )
        self.draft_model: LlamaModel | None = None
        self.draft: LlamaLM | None = None
        self.draft_problem: str | None = None
        if load.draft:
            draft_model = LlamaModel(load.draft, vocab_only=True)
            self.draft_problem = incompatibility(self.target_model, draft_model)
            draft_model.close()
            if self.draft_problem is not None and require_compatible_draft:
                raise IncompatiblePairError(
                    f"draft {Path(load.draft).name} cannot speculate for "
                    f"{Path(load.target).name}: {self.draft_problem}"
                )
            if self.draft_problem is None:
                self.draft_model = self._load(load.draft, load.draft_gpu_layers, "draft")
                check_pair(self.target_model, self.draft_model)
                self.draft = self._context(self.draft_model, load.n_ctx)
        from engine.drafters.learning import pair_key

        pair = pair_key(Path(load.target), Path(load.draft) if self.draft else None)
        self.knowledge = PairKnowledge(paths.data_dir() / "pairs" / pair if learn else None)
        self.history: SpeculationHistory | None = (
            SpeculationHistory(history_dir(paths.data_dir(), Path(load.target))) if learn else None
        )
        self._last_stream: list[int] = []  # the last prompt + reply added to the history
        self._cost: CostModel | None = None
        self._cost_stale = False  # live timings drifted from the curve: check it before the next reply
        self._drift: costmodel.DriftMonitor | None = None
        self._last_drift = -RECHECK_S
        self.cost_log: list[dict] = []  # every check and measurement of the curves, for the benchmark's record
        self._cost_notices: list[str] = []
        self._baseline: float | None = None
        self._lock = threading.Lock()
        self._drafters: dict[tuple, object] = {}
        self.governor: ThreadGovernor | None = None
        self._warm_saved: dict[str, list[int]] = {}  # what each saved file holds
        self.warm_restored = 0  # target tokens the last restore brought back (tests, stats)
        self.warm_start = learn

    def _load(self, path: str, gpu_layers: int, what: str, remote: rpc.RemoteDevices | None = None) -> LlamaModel:
        if remote is not None:
            # every layer on the listed servers (split among them by free memory, as
            # llama.cpp does), plus this machine's GPUs when GPU layers were asked for
            local = rpc.local_devices() if gpu_layers > 0 else []
            devices = remote.device_array(local)
            self.notices.append(f"the {what}'s layers run on {remote.describe()} (remote)")
            return LlamaModel(path, n_gpu_layers=10_000, devices=devices)
        shape = resources.model_shape(path)
        layers, notice = resources.gpu_layers_notice(gpu_layers, shape.n_layer, supports_gpu_offload(), what)
        if notice:
            self.notices.append(notice)
        return LlamaModel(path, n_gpu_layers=layers)

    def _context(self, model: LlamaModel, n_ctx: int) -> LlamaLM:
        ctx = LlamaContext(model, n_ctx=n_ctx, n_threads=self.threads, n_seq_max=N_SEQ_MAX)
        return LlamaLM(model, ctx)

    # ------------------------------------------------------------------ costs

    def _curve_key(self, path: str, gpu_layers: int) -> str:
        # a remote target costs what the network and the other machine make it cost
        where = f"{system_info()}|rpc={','.join(self.load_settings.rpc)}" if self.load_settings.rpc else system_info()
        # huge pages make a plain decode ~18% cheaper here: a curve measured without them is another machine's
        where += f"|hugepages={hugepages.active()}"
        return costmodel.cache_key(Path(path), where, self.threads, gpu_layers)

    def _share_threads(self, gpu_layers: int, remote: bool = False) -> int:
        """Threads a decode keeps busy, for the contention filter; 0 (no filter) when
        the model runs on a GPU or on remote devices and this CPU mostly waits."""
        return 0 if remote or (gpu_layers != 0 and supports_gpu_offload()) else self.threads

    def cost_model(self, remeasure: bool = False) -> CostModel:
        """Decode cost of the target (and draft) on this machine: cached per model
        file, backend, threads and GPU layers, but only when measured on a quiet
        machine, checked against a second of live decodes before it is trusted, and
        checked again when the engine's own decodes drift away from it."""
        if self._cost is not None and not remeasure and not self._cost_stale:
            return self._cost
        if self._cost_stale and self.governor is not None and self.governor.current != self.governor.full:
            return self._cost  # the machine is busy right now: judge the curve another time
        load = self.load_settings
        cache = paths.cache_dir()
        current = self._cost if self._cost_stale else None
        self._cost_stale = False
        target = self._curve(self.target, "target", self._curve_key(load.target, load.gpu_layers),
                             self._share_threads(load.gpu_layers, self.remote is not None), cache, remeasure,
                             current.target if current else None)
        draft = None
        if self.draft is not None:
            draft = self._curve(self.draft, "draft", self._curve_key(load.draft, load.draft_gpu_layers),
                                self._share_threads(load.draft_gpu_layers), cache, remeasure,
                                current.draft if current else None)
        cost = CostModel(target, draft)
        if current is None or cost.target is not current.target or cost.draft is not current.draft:
            self._drafters.clear()  # auto's drafter holds the curve it was made with
            if self.governor is not None:
                self.governor.expected = cost.target
        self._cost = cost
        self._drift = costmodel.DriftMonitor(cost.target)
        return cost

    @property
    def costs_in_use(self) -> CostModel | None:
        """The curves replies are using now, without checking them."""
        return self._cost

    def _curve(self, lm: LlamaLM, what: str, key: str, threads: int, cache: Path, remeasure: bool,
               current: CostCurve | None) -> CostCurve:
        """`current`: the curve in use, whose live timings drifted (else the cache's)."""
        known = None if remeasure else (current or costmodel.load_cached(cache, key))
        if known is not None:
            check = costmodel.spot_check(lm, known, threads)
            if check.verdict is None:
                self._log_cost(what, "kept", "busy, not judged" if check.busy else "agrees with live decodes")
                return known
            self._log_cost(what, "drifted", check.verdict)
        curve = costmodel.measure(lm, threads)
        if costmodel.save_cached(cache, key, curve):
            self._log_cost(what, "measured", "cached")
        else:
            # Never cached: the next session (or the next drift check) measures again.
            self._log_cost(what, "measured", "the machine was busy: used for now, not cached")
        return curve

    def _log_cost(self, what: str, action: str, detail: str) -> None:
        entry = {"at": time.time(), "model": what, "action": action, "detail": detail}
        self.cost_log.append(entry)
        if action == "drifted":
            self._cost_notices.append(f"The {what}'s measured decode costs no longer matched this machine "
                                      f"({detail}); measured them again.")

    def _observe_decode(self, n_tokens: int, seconds: float) -> None:
        """After every target decode of a reply: the thread governor, and the check
        of the cost curve against the engine's own timings."""
        governor = self.governor
        if governor is not None:
            governor.observe(n_tokens, seconds)
            if governor.current != governor.full:
                return  # fewer threads than the curve was measured with
        if self._drift is not None and not self._cost_stale:
            # the context the decode attended to: what is cached now, give or take the new nodes
            self._drift.observe(n_tokens, seconds, len(self.target.tokens))
            reason = self._drift.verdict()
            if reason is not None and time.monotonic() - self._last_drift >= RECHECK_S:
                self._last_drift = time.monotonic()
                self._cost_stale = True  # checked and, if confirmed, re-measured before the next reply
                self._log_cost("target", "live timings drifted", reason)

    def baseline_tps(self, remeasure: bool = False) -> float:
        """Plain decoding speed of the target on this machine (tokens/s), measured
        with the generation loop itself and cached beside the cost curve.

        A measurement taken while other programs held the cores is only ever too slow
        (one cached here read 0.3 tok/s for a 32 tok/s model, and every reply then
        showed a 100x "speed-up"), so a value under half of what the decode-cost curve
        allows is measured again, whether it came from the cache or not, and is kept
        only for this session if it stays implausible."""
        if self._baseline is not None and not remeasure:
            return self._baseline
        import json

        key = self._curve_key(self.load_settings.target, self.load_settings.gpu_layers)
        path = paths.cache_dir() / "costs" / f"baseline-{key}.json"
        if not remeasure:
            try:
                cached = float(json.loads(path.read_text())["tokens_per_s"])
                if self._plausible_baseline(cached):
                    self._baseline = cached
                    return cached
            except (OSError, ValueError, KeyError):
                pass
        best = 0.0
        for _ in range(BASELINE_ATTEMPTS):
            tps, clean = self._measure_baseline()
            best = max(best, tps)
            if self._plausible_baseline(best):
                if clean:  # a run that shared the cores with other programs is never cached
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(json.dumps({"tokens_per_s": best}))
                break
        self._baseline = best
        return best

    def _measure_baseline(self) -> tuple[float, bool]:
        """(tokens/s of the fastest of a few short runs, whether that run had the
        cores to itself: CPU share at least costmodel.MIN_SHARE)."""
        prompt = self.chat_tokens([{"role": "user", "content": "Count from one to fifty in words."}])
        settings = GenerationSettings(max_tokens=BASELINE_TOKENS)
        settings.spec.mode = "off"
        threads = self._share_threads(self.load_settings.gpu_layers, self.remote is not None)
        # the fastest of a few short runs: other processes can only slow a run down
        runs = []
        for _ in range(BASELINE_RUNS):
            self.target.truncate(0)
            cpu0, wall0 = costmodel.cpu_time(), time.perf_counter()
            tps = self._run(prompt, NoDrafter(), settings, None, None, None).stats.tokens_per_s
            cpu, wall = costmodel.cpu_time() - cpu0, time.perf_counter() - wall0
            runs.append((tps, threads <= 0 or cpu >= costmodel.MIN_SHARE * wall * threads))
        self.target.truncate(0)
        return max(runs)

    def _plausible_baseline(self, tokens_per_s: float) -> bool:
        return tokens_per_s >= BASELINE_PLAUSIBLE / self.cost_model().target(1)

    # ------------------------------------------------------------------ text

    def chat_tokens(self, messages: list[dict]) -> list[int]:
        text = self.template.render(messages, add_generation_prompt=True)
        return self.target_model.tokenize(text, add_special=False, parse_special=True)

    def fit_conversation(self, messages: list[dict], reserve: int) -> tuple[list[int], int]:
        """Tokens of the conversation, dropping the oldest turns (never the system
        prompt or the last message) until it fits with `reserve` tokens to spare.
        Returns (tokens, number of messages dropped)."""
        limit = self.target.n_ctx - reserve
        system = [m for m in messages[:1] if m["role"] == "system"]
        rest = messages[len(system):]
        dropped = 0
        while True:
            tokens = self.chat_tokens(system + rest)
            if len(tokens) <= limit or len(rest) <= 1:
                break
            rest = rest[1:]
            dropped += 1
        if len(tokens) >= self.target.n_ctx:
            raise ContextOverflowError(
                f"the message is {len(tokens)} tokens but the context holds {self.target.n_ctx}; "
                "shorten it or raise the context size"
            )
        return tokens, dropped

    # ------------------------------------------------------------------ generate

    def reply(
        self,
        messages: list[dict],
        settings: GenerationSettings,
        *,
        cancel: threading.Event | None = None,
        on_event: Callable[[Event], None] | None = None,
        record_margins: bool = False,
    ) -> Reply:
        reserve = min(settings.max_tokens, self.target.n_ctx // 4)
        prompt, dropped = self.fit_conversation(messages, reserve)
        if dropped and on_event:
            on_event(NoticeEvent(
                f"The conversation is longer than the context ({self.target.n_ctx} tokens): "
                f"the oldest {dropped} message(s) were left out of what the model sees."
            ))
        return self.generate_tokens(prompt, settings, cancel=cancel, on_event=on_event, record_margins=record_margins)

    def generate_tokens(
        self,
        prompt: list[int],
        settings: GenerationSettings,
        *,
        cancel: threading.Event | None = None,
        on_event: Callable[[Event], None] | None = None,
        record_margins: bool = False,
    ) -> Reply:
        spec = settings.spec
        dm = DraftModel(self.draft, self.draft_model.eog_mask) if self.draft is not None else None
        if spec.uses_draft_model and dm is None and spec.mode != "auto" and self.draft_problem:
            raise IncompatiblePairError(f"--spec {spec.mode} needs a compatible draft: {self.draft_problem}")
        if spec.mode == "auto" and dm is None and self.draft_problem and on_event:
            on_event(NoticeEvent(f"The draft model cannot be used ({self.draft_problem}); "
                                 "speculating with the n-gram stage only."))
        if self._cost_stale:
            self.cost_model()  # live timings drifted from the curve: check it (and re-measure) first
        cost = self.cost_model() if spec.mode == "auto" else None
        baseline = self.baseline_tps()
        while self._cost_notices:
            notice = self._cost_notices.pop(0)
            if on_event:
                on_event(NoticeEvent(notice))
        self._ensure_governor()
        drafter = self._drafter(spec, dm, cost)
        self._restore_warm()
        reply = self._run(prompt, drafter, settings, cancel, on_event, baseline, record_margins)
        self._save_warm()
        return reply

    # ------------------------------------------------------------------ warm start

    def _warm_files(self) -> list[tuple[LlamaLM, Path]]:
        """One file per model, keyed like the cost cache (threads aside) plus the context size:
        a state is only ever loaded into the same model file, backend and context it came from."""
        out: list[tuple[LlamaLM, Path]] = []
        if not self.warm_start:
            return out
        for role, lm, path, layers in (
            ("target", self.target, self.load_settings.target, self.load_settings.gpu_layers),
            ("draft", self.draft, self.load_settings.draft, self.load_settings.draft_gpu_layers),
        ):
            if lm is not None and path:
                # the cache's contents do not depend on the thread count (a settings change
                # that only alters threads must still find it)
                key = costmodel.cache_key(Path(path), system_info(), 0, layers)
                mtime = Path(path).stat().st_mtime_ns  # a file replaced in place has other weights
                out.append((lm, paths.data_dir() / "warm" / f"{role}-{key}-{mtime}-ctx{lm.n_ctx}.kv"))
        return out

    def _restore_warm(self) -> None:
        """Into an empty cache (a new engine, or one whose cache a measurement used), bring
        back the last conversation's; prefill then reads only what is new.  A file that
        does not load is deleted and costs nothing more."""
        with self._lock:
            for lm, path in self._warm_files():
                if lm.tokens or not path.exists():
                    continue
                restored = lm.load_state(str(path))
                if restored:
                    self._warm_saved[str(path)] = list(lm.tokens)
                else:
                    path.unlink(missing_ok=True)
                if lm is self.target:
                    self.warm_restored = restored

    def forget_warm(self) -> None:
        """Delete the saved conversation caches (the user deleted a conversation: what is
        on disk must not outlive it).  The next reply saves its own."""
        with self._lock:
            for _lm, path in self._warm_files():
                path.unlink(missing_ok=True)
                self._warm_saved.pop(str(path), None)

    def _save_warm(self) -> None:
        with self._lock:
            for lm, path in self._warm_files():
                tokens = lm.tokens
                if len(tokens) < WARM_MIN_TOKENS or self._warm_saved.get(str(path)) == tokens:
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_suffix(".part")
                if lm.save_state(str(part)):
                    os.replace(part, path)
                    self._warm_saved[str(path)] = list(tokens)
                    # one file per role: a state for other models or another context size
                    # is the previous conversation too, and ~30 KB per token
                    role = path.name.split("-", 1)[0]
                    for old in path.parent.glob(f"{role}-*.kv"):
                        if old != path:
                            old.unlink(missing_ok=True)
                else:
                    part.unlink(missing_ok=True)

    def _drafter(self, spec, dm, cost):
        """Drafters live as long as the engine, so what they learn about this pair
        (draft step value, exploration back-off) carries over between replies."""
        key = tuple(sorted(vars(spec).items()))
        if key not in self._drafters:
            self._drafters[key] = make_drafter(spec, dm, self.knowledge, cost, history=self.history)
        return self._drafters[key]

    def _ensure_governor(self) -> None:
        if self.governor is None:
            curve = self.cost_model().target
            self.governor = ThreadGovernor([self.target.ctx, self.draft.ctx if self.draft else None],
                                           self.threads, curve)

    def _run(self, prompt, drafter, settings, cancel, on_event, baseline, record_margins=False) -> Reply:
        with self._lock:
            started = time.perf_counter()
            # the speed-up is judged against plain decoding under this reply's own
            # conditions (engine/decoding/baseline.py); `baseline` is only its fallback
            plain = PlainEstimate(self._cost.target if self._cost is not None else None, self.threads, baseline)
            try:
                reply = generate(
                    self.target, prompt, drafter, settings,
                    eog_mask=self.target_model.eog_mask, token_bytes=self.target_model.token_bytes,
                    cancel=cancel, on_event=on_event, baseline_tps=baseline, record_margins=record_margins,
                    on_target_decode=self._observe_decode,
                    plain=plain,
                    draft_model=self.draft_model.path.name if self.draft_model is not None else None,
                )
                if reply.reason != "cancelled":
                    self._remember(prompt, reply.tokens)
                return reply
            finally:
                if time.perf_counter() - started > 0.5:
                    self.knowledge.end_of_reply()

    def _remember(self, prompt: list[int], tokens: list[int]) -> None:
        """A finished reply joins the speculation history, after the part of its prompt
        the history has not seen (a follow-up's new message, a new conversation), as
        one document: a question asked again then matches straight into its answer."""
        if self.history is None:
            return
        self.history.add([*new_part(prompt, self._last_stream), *tokens])
        self._last_stream = [*prompt, *tokens]

    def use_history(self, history: SpeculationHistory | None) -> None:
        """Read (and add to) another speculation history from the next reply on
        (tests, benchmarks that measure what a history is worth)."""
        with self._lock:
            self.history = history
            self._last_stream = []
            self._drafters.clear()

    def forget_history(self) -> int:
        """"Forget speculation history": empty this session's and delete every
        target's history file.  Returns how many files were deleted."""
        with self._lock:
            files = forget_all(paths.data_dir())
            if self.history is not None:
                self.history.forget()
            self._last_stream = []
            return files

    def close(self) -> None:
        for lm in (self.target, self.draft):
            if lm is not None:
                lm.ctx.close()
        for model in (self.target_model, self.draft_model):
            if model is not None:
                model.close()
