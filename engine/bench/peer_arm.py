"""llama.cpp's own binaries as arms (`--peer-llama-cpp DIR`, built by
scripts/build_peer_llama.sh from the sources inside the llama-cpp-python sdist).

* `llama.cpp`        llama-completion, plain decoding.
* `llama.cpp-draft`  llama-speculative-simple --spec-type draft-simple; settings
                     n_max (--spec-draft-n-max, llama.cpp default 3), p_min
                     (--spec-draft-p-min, default 0), n_min.
* `llama.cpp-ngram`  llama-speculative-simple --spec-type ngram-simple, or
                     type=ngram-mod / ngram-map-k / ngram-map-k4v (all in the
                     bundled llama.cpp, common/speculative.cpp).  ngram-simple and
                     the map kinds take size_n (lookup length, default 12), size_m
                     (draft length, 48) and min_hits (1) -> --spec-<type>-size-n ...;
                     ngram-mod (rolling hash over the context, drafts only long
                     spans) takes n_match (24), n_min (48), n_max (64) ->
                     --spec-ngram-mod-n-match ...  Defaults are llama.cpp's.

Same prompt text (chat template applied by us; both tools tokenize it with
special tokens parsed, as we do), same threads, greedy (--temp 0 --top-k 1),
same token count, flash attention off like our contexts (every peer arm takes
fa=on|auto to compare).  Timings are the tools' own: llama-completion's perf counters
(its "eval time" covers single-token decodes, i.e. generation), and
llama-speculative-simple's "encoded"/"decoded" lines (its perf counters file
verification batches under prompt eval, so they are not used).

llama-speculative-simple stops only after the step that passes -n, and a step may
emit a 48-token draft: it reported 176 tokens for 128 asked, the last 48 for the
price of one verify, which made its tokens/s a quarter higher than its speed over
the same 128 tokens.  So its stdout (one write per token) is read as it streams and
each arrival timed: the time to the requested count is its "decoded" time minus the
gap between the arrival of the requested count's last token and the last token.
tokens/s is then the requested tokens over that time, like every other arm; τ and
acceptance stay those of the whole run.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.bench.results import ArmSpec, RunResult, children_cpu
from engine.bench.suites import BenchPrompt
from engine.llama import hugepages

PEER_KINDS = ("llama.cpp", "llama.cpp-draft", "llama.cpp-ngram")
DEFAULT_PEER_ARMS = ("llama.cpp", "llama.cpp-draft", "llama.cpp-draft:n_max=16,p_min=0.75", "llama.cpp-ngram",
                     "llama.cpp-ngram:type=ngram-mod", "llama.cpp-ngram:type=ngram-map-k")
NGRAM_TYPES = {  # --spec-type -> the settings it takes (each becomes --spec-<type>-<setting with dashes>)
    "ngram-simple": ("size_n", "size_m", "min_hits"),
    "ngram-map-k": ("size_n", "size_m", "min_hits"),
    "ngram-map-k4v": ("size_n", "size_m", "min_hits"),
    "ngram-mod": ("n_match", "n_min", "n_max"),
}
TIMEOUT_S = 1200
COMPLETION, SPECULATIVE = "llama-completion", "llama-speculative-simple"

_NUM = r"([0-9]+(?:\.[0-9]+)?)"
RE_PROMPT_EVAL = re.compile(rf"prompt eval time =\s*{_NUM} ms /\s*(\d+) tokens")
RE_EVAL = re.compile(rf"\beval time =\s*{_NUM} ms /\s*(\d+) runs")
RE_ENCODED = re.compile(rf"encoded\s+(\d+) tokens in\s+{_NUM} seconds")
RE_DECODED = re.compile(rf"decoded\s+(\d+) tokens in\s+{_NUM} seconds, speed:\s+{_NUM} t/s")
RE_DRAFTED = re.compile(r"n_drafted\s*=\s*(\d+)")
RE_ACCEPT = re.compile(r"n_accept\s*=\s*(\d+)")


def check_spec(spec: ArmSpec) -> None:
    """Raise ValueError for settings the peer's command line cannot express."""
    if spec.kind == "llama.cpp-ngram":
        command(spec, Path("."), "", target="t", draft=None, threads=1, n_ctx=1, max_tokens=1)


def command(
    spec: ArmSpec, bin_dir: Path, prompt_text: str, *, target: str, draft: str | None, threads: int,
    n_ctx: int, max_tokens: int, temperature: float = 0.0, seed: int | None = None,
) -> list[str]:
    # -p, not -f: -f drops the prompt's final newline (the template's "assistant\n").
    # -fa off: Tandem's contexts run without flash attention, and with it llama.cpp's greedy
    # output differs from ours (code-1 diverged at token 73 where plain's margin was 6.3).
    common = ["-m", target, "-p", prompt_text, "--no-escape", "-fa", spec.params.get("fa", "off"),
              "-t", str(threads), "-tb", str(threads),
              "-c", str(n_ctx), "-b", "2048", "-ub", "512", "--seed", str(seed if seed is not None else 0)]
    if temperature <= 0:
        common += ["--temp", "0", "--top-k", "1"]
    else:
        common += ["--temp", str(temperature), "--top-k", "40", "--top-p", "0.95", "--min-p", "0"]
    if spec.kind == "llama.cpp":
        return [str(bin_dir / COMPLETION), *common, "-n", str(max_tokens), "-no-cnv", "--no-display-prompt"]
    # llama-speculative-simple stops only once it has emitted more than -n tokens
    cmd = [str(bin_dir / SPECULATIVE), *common, "-n", str(max(max_tokens - 1, 1))]
    p = spec.params
    if spec.kind == "llama.cpp-draft":
        if draft is None:
            raise ValueError("llama.cpp-draft needs a draft model")
        cmd += ["--spec-type", "draft-simple", "-md", draft, "-td", str(threads), "-tbd", str(threads),
                "--spec-draft-n-max", p.get("n_max", "3"), "--spec-draft-p-min", p.get("p_min", "0")]
        if "n_min" in p:
            cmd += ["--spec-draft-n-min", p["n_min"]]
        return cmd
    kind = p.get("type", "ngram-simple")
    if kind not in NGRAM_TYPES:
        raise ValueError(f"unknown n-gram type {kind!r}: choose from {', '.join(NGRAM_TYPES)}")
    unknown = set(p) - {"type", "fa", *NGRAM_TYPES[kind]}
    if unknown:
        raise ValueError(f"{kind} takes {', '.join(NGRAM_TYPES[kind])}, not {', '.join(sorted(unknown))}")
    cmd += ["--spec-type", kind]
    for key in NGRAM_TYPES[kind]:
        if key in p:
            cmd += [f"--spec-{kind}-{key.replace('_', '-')}", p[key]]
    return cmd


def run_peer(
    spec: ArmSpec, prompt: BenchPrompt, prompt_text: str, n_prompt_tokens: int, *, bin_dir: Path,
    target: str, draft: str | None, threads: int, n_ctx: int, max_tokens: int,
    temperature: float = 0.0, seed: int | None = None, prefix_chars: Callable[[str, int], int] | None = None,
) -> RunResult:
    """`prefix_chars(text, n)`: how many characters of `text` its first n tokens span
    (the target's tokenizer), to time a speculative peer to exactly `max_tokens`."""
    result = RunResult(spec.name, prompt.id, prompt.category, prompt_tokens=n_prompt_tokens)
    try:
        cmd = command(spec, bin_dir, prompt_text, target=target, draft=draft, threads=threads,
                      n_ctx=n_ctx, max_tokens=max_tokens, temperature=temperature, seed=seed)
    except ValueError as exc:
        result.error = f"crashed: {exc}"
        return result
    start, cpu0 = time.perf_counter(), children_cpu()
    try:
        proc = _run_timed(cmd)
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.error = f"crashed: {exc}"
        return result
    result.wall = time.perf_counter() - start
    # whole process, model loading included: a rough indicator only
    result.cpu_share = (children_cpu() - cpu0) / (result.wall * threads)
    out = proc.stdout.decode("utf-8", "replace")
    err = proc.stderr.decode("utf-8", "replace")
    # the prompt is in the JSON already; keep the command readable
    result.extra = {"command": [c if c != prompt_text else "<prompt>" for c in cmd], "returncode": proc.returncode}
    if proc.returncode != 0:
        tail = " | ".join(line for line in err.strip().splitlines()[-3:])
        result.error = f"crashed: exit status {proc.returncode}: {tail}"
        return result
    try:
        if spec.kind == "llama.cpp":
            parse_completion(result, out, err)
        else:
            parse_speculative(result, out, err, prompt_text)
            if prefix_chars is not None and result.n_tokens > max_tokens:
                time_to_count(result, proc, prompt_text, max_tokens, prefix_chars)
    except ValueError as exc:
        result.error = f"crashed: could not read the tool's output ({exc})"
        result.extra["stderr_tail"] = err[-2000:]
    return result


def parse_completion(result: RunResult, out: str, err: str) -> None:
    logs = out + "\n" + err
    pe, ev = RE_PROMPT_EVAL.search(logs), RE_EVAL.search(logs)
    if not pe or not ev:
        raise ValueError("no perf counters printed")
    result.t_prefill = float(pe.group(1)) / 1e3
    result.prefill_tokens = int(pe.group(2))
    result.t_generate = float(ev.group(1)) / 1e3
    result.n_tokens = int(ev.group(2))  # one decode per generated token after the first
    result.steps = result.n_tokens
    result.t_verify = result.t_generate
    text = out.split("llama_perf")[0]
    result.text = text.rstrip("\n").removesuffix(" [end of text]")


def parse_speculative(result: RunResult, out: str, err: str, prompt_text: str) -> None:
    logs = out + "\n" + err
    enc, dec = RE_ENCODED.search(logs), RE_DECODED.search(logs)
    if not enc or not dec:
        raise ValueError("no encoded/decoded timing lines")
    result.prefill_tokens = int(enc.group(1))
    result.t_prefill = float(enc.group(2))
    result.n_tokens = int(dec.group(1))
    result.t_generate = float(dec.group(2))
    drafted, accepted = RE_DRAFTED.search(logs), RE_ACCEPT.search(logs)
    if drafted and accepted:
        result.tested = result.drafted = int(drafted.group(1))
        result.accepted = int(accepted.group(1))
        # every target pass emits its accepted drafts plus one token of its own
        result.steps = max(result.n_tokens - result.accepted, 1)
    # stdout echoes the prompt, then the generated text
    i = out.find(prompt_text)
    text = out[i + len(prompt_text):] if i >= 0 else out
    result.text = text.removesuffix("\n\n\n\n").removesuffix("\n\n")


class _Timed:
    """A finished process: its output and when each stdout chunk arrived."""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes, chunks: list[tuple[float, int]]) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr
        self.chunks = chunks  # (arrival time, stdout bytes received so far)


def _run_timed(cmd: list[str]) -> _Timed:
    # llama.cpp's tools get the same allocator setting as Tandem's engine (huge pages)
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=hugepages.child_env())
    out, err, chunks = bytearray(), bytearray(), []

    def read_out() -> None:
        while block := os.read(proc.stdout.fileno(), 1 << 16):
            out.extend(block)
            chunks.append((time.perf_counter(), len(out)))

    def read_err() -> None:
        while block := os.read(proc.stderr.fileno(), 1 << 16):
            err.extend(block)

    readers = [threading.Thread(target=read_out, daemon=True), threading.Thread(target=read_err, daemon=True)]
    for r in readers:
        r.start()
    try:
        proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    finally:
        for r in readers:
            r.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
    return _Timed(proc.returncode, bytes(out), bytes(err), chunks)


def time_to_count(result: RunResult, proc: _Timed, prompt_text: str, n: int,
                  prefix_chars: Callable[[str, int], int]) -> None:
    """Cut a speculative peer's result to its first `n` tokens, timed from its stdout."""
    text = result.text
    out = proc.stdout.decode("utf-8", "replace")
    i = out.find(prompt_text)
    gen_start = len(out[: i + len(prompt_text)].encode()) if i >= 0 else 0
    target_byte = gen_start + len(text[: prefix_chars(text, n)].encode())
    arrived = next((t for t, end in proc.chunks if end >= target_byte), None)
    if arrived is None:
        return
    last = proc.chunks[-1][0]
    t_n = result.t_generate - (last - arrived)
    if t_n <= 0:
        return
    result.extra["emitted"] = {"tokens": result.n_tokens, "seconds": result.t_generate}
    if result.steps:
        result.steps = max(1, round(result.steps * n / result.n_tokens))  # keeps the run's τ
    result.n_tokens = n
    result.t_generate = t_n
