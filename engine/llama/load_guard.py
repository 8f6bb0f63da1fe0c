"""Load a model file nobody has loaded yet in a short-lived child process first.

The defensive check (gguf_check.py and the vocabulary and model checks beside it)
refuses every contradiction we know llama.cpp asserts on, but it cannot be complete:
llama.cpp has hundreds of GGML_ASSERTs on the way from a file to a built graph, and
an assert is abort(), which no Python code survives.  So before a process that must
not die (the CLI, the benchmark, the self-test, the engine process) asks llama.cpp for
a file it has not seen load cleanly, a child process loads it (all of it, weights
mapped, not read into the heap, plus a small context so the graph is built once) and
exits.  An abort kills only the child, and its assert line becomes the error.

A clean load is remembered (by content for small files; by path, size, mtime and
inode for big ones, so a file changed in place is probed again): the cost, the
child's start (importing llama.cpp) plus one load, is paid once per file.
`python -m engine.llama.load_guard FILE` is the child.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from engine.errors import ModelFileError

VERDICTS_FILE = "llama-loads.json"
PROBE_TIMEOUT_S = 300.0  # a 30 GB file from a slow disk; the child only maps and checks
PROBE_N_CTX = 64
_MAX_REMEMBERED = 200
HASH_BELOW = 64 << 20  # bytes
_lock = threading.Lock()


def ensure_loadable(path: Path) -> None:
    """Raise ModelFileError unless llama.cpp is known to load `path` without dying."""
    key = _key(path)
    with _lock:
        if key in _read_verdicts():
            return
    ok, message = probe(path)
    if not ok:
        raise ModelFileError(message)
    with _lock:
        _remember(key)


def probe(path: Path) -> tuple[bool, str]:
    """Load `path` in a child process: (True, "") or (False, a one-line reason)."""
    env = {**os.environ, "PYTHONUTF8": "1"}
    env.pop("TANDEM_FAULT", None)  # a fault meant for the parent is not the child's
    if not getattr(sys, "frozen", False):  # the child runs this very copy of the engine, wherever it is started
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    try:
        done = subprocess.run(_child_command(path), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=PROBE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return False, f"llama.cpp did not finish loading {path.name} in {PROBE_TIMEOUT_S:.0f}s: {path}"
    except OSError as exc:
        return False, f"could not start a process to try {path.name} ({exc.strerror or exc}): {path}"
    out = done.stdout.decode("utf-8", "replace").strip().splitlines()
    err = done.stderr.decode("utf-8", "replace")
    if done.returncode == 0 and out and out[-1] == "ok":
        return True, ""
    if done.returncode < 0:
        name = _signal_name(-done.returncode)
        return False, f"llama.cpp crashed ({name}) loading {path.name}: {crash_line(err)}: {path}"
    reason = out[-1] if out and out[-1] != "ok" else crash_line(err)
    return False, one_line(reason)


def crash_line(stderr: str) -> str:
    """The line that says why llama.cpp aborted (its GGML_ASSERT or exception), if any."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for marker in ("GGML_ASSERT", "GGML_ABORT", "terminate called", "what():", "error"):
        for line in lines:
            if marker in line:
                return one_line(line)
    return one_line(lines[-1]) if lines else "no message"


def one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _child_command(path: Path) -> list[str]:
    if getattr(sys, "frozen", False):  # the packaged app: app/launcher.py dispatches this flag
        return [sys.executable, "--llama-probe", str(path)]
    return [sys.executable, "-m", "engine.llama.load_guard", str(path)]


# ---------------------------------------------------------------- verdicts


def _key(path: Path) -> str:
    """Small files by content (the same bytes under any name load the same: tests and
    scratch copies), big ones by where they are and when they last changed (hashing a
    gigabyte would cost more than the probe; a download is checksummed already)."""
    st = path.stat()
    if st.st_size <= HASH_BELOW:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"


def _verdicts_path() -> Path:
    # engine.models.paths.cache_dir() without importing engine.models (llama is the bottom layer)
    base = os.environ.get("TANDEM_CACHE_DIR")
    if not base:
        import platformdirs

        base = platformdirs.user_cache_dir("tandem", appauthor=False)
    return Path(base) / VERDICTS_FILE


def _read_verdicts() -> list[str]:
    try:
        data = json.loads(_verdicts_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    loaded = data.get("loaded") if isinstance(data, dict) else None
    return [k for k in loaded if isinstance(k, str)] if isinstance(loaded, list) else []


def _remember(key: str) -> None:
    keys = [*[k for k in _read_verdicts() if k != key][-(_MAX_REMEMBERED - 1):], key]
    path = _verdicts_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": 1, "loaded": keys}), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # not remembering only costs another probe next time


# ---------------------------------------------------------------- the child


def child_main(argv: list[str]) -> int:
    """Load the model and build a small context; print "ok" or the reason it failed."""
    from engine.llama import backend

    if len(argv) != 1:
        print("usage: python -m engine.llama.load_guard MODEL.gguf", file=sys.stderr)
        return 2
    try:
        model = backend.LlamaModel(argv[0], guarded=False, use_extra_bufts=False)
        backend.LlamaContext(model, n_ctx=PROBE_N_CTX, n_threads=1, n_seq_max=1, n_batch=PROBE_N_CTX).close()
        model.close()
    except Exception as exc:  # the reason goes to the parent, which raises it
        print(one_line(str(exc)), flush=True)
        return 1
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1:]))
