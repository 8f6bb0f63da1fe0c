#!/usr/bin/env python3
"""Durability kill loop (issue 6, item 2): SIGKILL the whole app at random moments while
a reply streams, many times over one chat database.

    .venv/bin/python scripts/kill_loop.py --kills 50                # the full run (README figures)
    .venv/bin/python scripts/kill_loop.py --kills 10 --json out.json
    .venv/bin/python scripts/kill_loop.py --kills 5 --real          # the default pair instead of tiny models

Each round starts the real app in a child process (MainWindow, its EngineClient and a
real engine process) on the same data directory, opens a new chat, sends a question and,
at a random moment while the answer streams, SIGKILLs the app.  With the app dead the
loop then checks: the database opens, `PRAGMA integrity_check` and `foreign_key_check`
pass, every conversation of the earlier rounds is still there and unchanged, the cut-off
reply is present, marked interrupted, and its text is a prefix of what the engine
streamed; the orphaned engine process exits by itself.

How much text was lost: the engine runs behind a tee (this script with --engine-tee)
that timestamps every text event it writes to the app, and the app child prints the
length of the reply it holds after every update.  `lost_shown` is what the window had
received and shown but the database did not hold (what a user could notice; bounded by
the save interval, app/chat_controller.py), `lost_streamed` what the engine had written
but the database did not hold (adds whatever was still in the pipe, never shown).

With the tiny models an answer would be over in a fraction of a second, so the engine
is slowed to 50 steps a second with TANDEM_FAULT=verify:sleep=0.02
(engine/faults.py), a real model's pace.  Exit status 1 when any round failed a check.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# the tiny models answer these with 370-510 tokens in 180-500 steps (greedy, any mode)
QUESTIONS = [
    "Count to one hundred",
    "Write the numbers from one to two hundred, 日本語 too",
    "Repeat after me",
    "Write a long essay",
]
TINY_STEP_SLEEP = "verify:sleep=0.02"  # 50 steps/s: every tiny reply streams for 3.6 s or more
START_TIMEOUT_S = 180.0  # app start + engine load (+ the first cost measurement of a session)
ORPHAN_TIMEOUT_S = 10.0


# ================================================================ the engine behind a tee


def engine_tee(log_path: str) -> int:
    """engine/runtime/server.py's main(), with every text event also appended (timestamped) to
    `log_path` right after it was written to the app's pipe."""
    from engine.runtime import server

    # line-buffered: each event reaches the OS at once; open for the life of the process
    log = open(log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    class TeeServer(server.Server):
        def send(self, message: dict[str, Any]) -> None:
            super().send(message)
            if message.get("type") == "text":
                text = "".join(piece[0] for piece in message["pieces"])
                log.write(json.dumps({"t": time.time(), "id": message.get("id"), "text": text}) + "\n")

    # the same fd juggling as server.main(): native code's prints must not reach the protocol
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    TeeServer(protocol).serve(sys.stdin)
    return 0


# ================================================================ the app child


def app_child(round_no: int, tee: str, mode: str, max_tokens: int) -> int:
    """The real window, on the data directory of the environment; prints
    ENGINE <pid>, MSG <id> and LEN <chars> <time> lines for the parent."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QSettings, QTimer

    from app.engine_client import EngineClient
    from app.main import make_application
    from app.settings_store import ModelChoice, SettingsStore
    from app.store import DB_NAME, ChatStore
    from app.theme import ThemeManager
    from app.views.main_window import MainWindow
    from engine.models.paths import data_dir

    app = make_application()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, os.environ["CHILD_QSETTINGS"])
    prefs = SettingsStore()
    prefs.set_model_choice(ModelChoice(threads=1))  # 2-core machines: see tests/app/conftest.py
    gen = prefs.generation()
    gen.max_tokens = max_tokens
    gen.spec.mode = mode
    prefs.set_generation(gen)
    prefs.sync()
    # build_window(), with the engine behind the tee
    theme = ThemeManager.for_app(app, prefs.ui().theme)
    store = ChatStore(data_dir() / DB_NAME)
    client = EngineClient(command=[sys.executable, str(Path(__file__).resolve()), "--engine-tee", tee])
    window = MainWindow(store, prefs, theme, client)
    window.show()

    def report(_msg_id: int) -> None:
        if window.chat.active is not None:
            print(f"LEN {len(window.chat.active.text)} {time.time():.6f}", flush=True)

    def start() -> None:
        if not window.engine.ready:
            if window.engine.state in ("load_failed", "crashed", "missing"):
                print(f"FAILED engine {window.engine.state}: {window.banner.label.text()}", flush=True)
                app.exit(3)
                return
            QTimer.singleShot(20, start)
            return
        print(f"ENGINE {window.client.pid}", flush=True)
        window.chat.reply_updated.connect(report)
        window.chat.reply_finished.connect(lambda msg_id: print(f"DONE {msg_id}", flush=True))
        window.new_chat()
        window.send(QUESTIONS[round_no % len(QUESTIONS)])
        if window.chat.active is None:
            print("FAILED the question was not sent", flush=True)
            app.exit(3)
            return
        print(f"MSG {window.chat.active.msg_id}", flush=True)

    start()
    return app.exec()


# ================================================================ the loop


@dataclass
class Round:
    number: int
    mode: str
    delay_s: float
    msg_id: int | None = None
    engine_pid: int | None = None
    db_chars: int = 0
    shown_chars: int = 0
    streamed_chars: int = 0
    lost_shown_chars: int = 0
    lost_shown_bytes: int = 0
    lost_shown_s: float = 0.0
    lost_streamed_chars: int = 0
    lost_streamed_bytes: int = 0
    lost_streamed_s: float = 0.0
    finished_before_kill: bool = False
    problems: list[str] = field(default_factory=list)


def snapshot(db_path: Path) -> dict[int, list[tuple]]:
    """Every conversation's messages as they stand (what later rounds must not change)."""
    db = sqlite3.connect(str(db_path))
    try:
        rows = db.execute("SELECT conversation_id, id, parent_id, role, text, finish, interrupted FROM messages "
                          "ORDER BY conversation_id, id").fetchall()
        convs = [r[0] for r in db.execute("SELECT id FROM conversations WHERE deleted_at IS NULL")]
    finally:
        db.close()
    out: dict[int, list[tuple]] = {c: [] for c in convs}
    for conv_id, *rest in rows:
        out.setdefault(conv_id, []).append(tuple(rest))
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (dead, not yet reaped by its parent) counts as gone
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def one_round(rnd: Round, work: Path, env: dict[str, str], max_delay: float, max_tokens: int) -> dict[int, list]:
    from app.store import DB_NAME, ChatStore

    tee = work / f"tee-{rnd.number}.jsonl"
    tee.write_text("")
    with open(work / f"child-{rnd.number}.err", "w") as err:  # the child keeps its own copy of the fd
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", str(rnd.number), "--tee", str(tee),
             "--mode", rnd.mode, "--max-tokens", str(max_tokens)],
            stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=ROOT,
        )
    lines: list[tuple[float, str]] = []
    msg_seen = threading.Event()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append((time.time(), line.strip()))
            if line.startswith(("MSG", "FAILED")):
                msg_seen.set()
        msg_seen.set()  # EOF: the child died before sending

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not msg_seen.wait(START_TIMEOUT_S) or not any(text.startswith("MSG") for _t, text in lines):
        child.kill()
        child.wait()
        tail = (work / f"child-{rnd.number}.err").read_text()[-1500:]
        rnd.problems.append(f"the app did not send its question: {[t for _, t in lines]} {tail}")
        return {}
    time.sleep(rnd.delay_s)
    t_kill = time.time()
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    reader.join(timeout=30)
    for _t, text in lines:
        kind, _, value = text.partition(" ")
        if kind == "ENGINE":
            rnd.engine_pid = int(value)
        elif kind == "MSG":
            rnd.msg_id = int(value)
        elif kind == "DONE":
            rnd.finished_before_kill = True
    shown = [(float(t), int(n)) for kind, n, t in (x.split(" ") for _ts, x in lines if x.startswith("LEN "))]

    # ---- the database, with the app dead
    db_path = Path(env["TANDEM_DATA_DIR"]) / DB_NAME
    try:
        store = ChatStore(db_path)
    except Exception as exc:  # the one thing that must never happen
        rnd.problems.append(f"the database does not open: {type(exc).__name__}: {exc}")
        return {}
    try:
        check = store.db.execute("PRAGMA integrity_check").fetchall()
        if [tuple(r) for r in check] != [("ok",)]:
            rnd.problems.append(f"integrity_check: {[tuple(r) for r in check]}")
        fk = store.db.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            rnd.problems.append(f"foreign_key_check: {[tuple(r) for r in fk]}")
        reply = store.message(rnd.msg_id) if rnd.msg_id is not None else None
        if reply is None:
            rnd.problems.append(f"the reply {rnd.msg_id} is gone")
            return {}
        question = store.message(reply.parent_id) if reply.parent_id is not None else None
        if question is None or question.text != QUESTIONS[rnd.number % len(QUESTIONS)]:
            rnd.problems.append(f"the question is lost or changed: {question}")
        if rnd.finished_before_kill:
            if reply.interrupted or reply.finish in (None, "interrupted"):
                rnd.problems.append(f"a finished reply was marked {reply.finish}")
        elif not (reply.interrupted and reply.finish == "interrupted" and rnd.msg_id in store.recovered):
            rnd.problems.append(f"the cut-off reply is not marked interrupted: finish={reply.finish}")
        db_text = reply.text
    finally:
        store.close()

    # ---- what was lost
    events = [json.loads(line) for line in tee.read_text(encoding="utf-8").splitlines() if line.strip()]
    streamed = ""
    ends: list[tuple[float, int]] = []  # (time written, streamed length after it)
    for event in events:
        if event["t"] <= t_kill:
            streamed += event["text"]
            ends.append((event["t"], len(streamed)))
    everything = "".join(e["text"] for e in events)
    if not everything.startswith(db_text):
        rnd.problems.append(f"the saved text is not what the engine wrote: {db_text[:80]!r} vs {everything[:80]!r}")
    rnd.db_chars, rnd.streamed_chars = len(db_text), len(streamed)
    rnd.shown_chars = max((n for _t, n in shown), default=0)
    if rnd.shown_chars > len(streamed):
        rnd.problems.append(f"the window showed {rnd.shown_chars} characters, the engine wrote {len(streamed)}")
    if not rnd.finished_before_kill:
        rnd.lost_shown_chars = max(0, rnd.shown_chars - len(db_text))
        rnd.lost_shown_bytes = len(streamed[len(db_text):rnd.shown_chars].encode("utf-8"))
        first_lost_shown = next((t for t, n in shown if n > len(db_text)), None)
        rnd.lost_shown_s = round(t_kill - first_lost_shown, 3) if first_lost_shown is not None else 0.0
        rnd.lost_streamed_chars = max(0, len(streamed) - len(db_text))
        rnd.lost_streamed_bytes = len(streamed[len(db_text):].encode("utf-8"))
        first_lost = next((t for t, n in ends if n > len(db_text)), None)
        rnd.lost_streamed_s = round(t_kill - first_lost, 3) if first_lost is not None else 0.0

    # ---- the orphaned engine notices that its app is gone (stdin closes) and exits
    if rnd.engine_pid is not None:
        deadline = time.monotonic() + ORPHAN_TIMEOUT_S
        while _pid_alive(rnd.engine_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(rnd.engine_pid):
            os.kill(rnd.engine_pid, signal.SIGKILL)
            rnd.problems.append(f"the engine process {rnd.engine_pid} outlived the app by {ORPHAN_TIMEOUT_S:.0f} s")
    return snapshot(db_path)


def run(kills: int, work: Path, *, seed: int = 0, real: bool = False, max_delay: float | None = None,
        modes: tuple[str, ...] = ("off", "chain", "ngram"), data_dir: Path | None = None) -> dict[str, Any]:
    """`kills` rounds on one database (in `data_dir`, default under `work`); returns the figures."""
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT),
           "TANDEM_DATA_DIR": str(data_dir or work / "data"), "CHILD_QSETTINGS": str(work / "qsettings")}
    env.setdefault("TANDEM_CACHE_DIR", str(work / "cache"))
    env.pop("TANDEM_FAULT", None)
    if real:
        from engine.models.paths import models_dir

        env["TANDEM_MODELS_DIR"] = str(models_dir())  # where the pair is, whatever the data directory
        max_tokens = 400
        max_delay = 12.0 if max_delay is None else max_delay
    else:
        from tests.app.helpers import make_tiny_world

        models, catalog_path = make_tiny_world(work / "tiny-world")
        env.update(TANDEM_MODELS_DIR=str(models), TANDEM_CATALOG=str(catalog_path), TANDEM_FAULT=TINY_STEP_SLEEP)
        max_tokens = 3000
        max_delay = 3.0 if max_delay is None else max_delay
    rounds: list[Round] = []
    before: dict[int, list] = {}
    started = time.time()
    for number in range(kills):
        rnd = Round(number, rng.choice(modes), round(rng.uniform(0.0, max_delay), 3))
        after = one_round(rnd, work, env, max_delay, max_tokens)
        # earlier conversations: still there, message for message (the one just cut off may only grow)
        for conv_id, messages in before.items():
            if after.get(conv_id) != messages and after:
                rnd.problems.append(f"conversation {conv_id} changed: {messages} -> {after.get(conv_id)}")
        if after:
            before = after
        rounds.append(rnd)
        status = "ok" if not rnd.problems else "; ".join(rnd.problems)
        print(f"round {number}: mode {rnd.mode}, kill after {rnd.delay_s:.2f} s, saved {rnd.db_chars} / shown "
              f"{rnd.shown_chars} / streamed {rnd.streamed_chars} chars: {status}", file=sys.stderr, flush=True)
    cut = [r for r in rounds if not r.finished_before_kill and r.msg_id is not None]
    return {
        "kills": kills,
        "models": "default pair" if real else "tiny",
        "seconds": round(time.time() - started, 1),
        "survived": sum(1 for r in rounds if not r.problems),
        "cut_mid_reply": len(cut),
        "finished_before_kill": sum(1 for r in rounds if r.finished_before_kill),
        "empty_when_cut": sum(1 for r in cut if r.db_chars == 0),
        "conversations": len(before),
        "max_lost_shown_chars": max((r.lost_shown_chars for r in cut), default=0),
        "max_lost_shown_bytes": max((r.lost_shown_bytes for r in cut), default=0),
        "max_lost_shown_s": max((r.lost_shown_s for r in cut), default=0.0),
        "max_lost_streamed_chars": max((r.lost_streamed_chars for r in cut), default=0),
        "max_lost_streamed_bytes": max((r.lost_streamed_bytes for r in cut), default=0),
        "max_lost_streamed_s": max((r.lost_streamed_s for r in cut), default=0.0),
        "mean_lost_streamed_chars": round(sum(r.lost_streamed_chars for r in cut) / max(len(cut), 1), 1),
        "problems": {r.number: r.problems for r in rounds if r.problems},
        "rounds": [vars(r) for r in rounds],
        "ok": all(not r.problems for r in rounds),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="the provisioned default pair instead of tiny models")
    ap.add_argument("--max-delay", type=float, help="latest kill, seconds after the question is sent")
    ap.add_argument("--work", type=Path, help="where the database and logs go (default: a temporary directory)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    # internal: the two child roles
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tee", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="off", help=argparse.SUPPRESS)
    ap.add_argument("--max-tokens", type=int, default=3000, help=argparse.SUPPRESS)
    ap.add_argument("--engine-tee", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.engine_tee:
        return engine_tee(args.engine_tee)
    if args.child is not None:
        return app_child(args.child, args.tee, args.mode, args.max_tokens)
    if args.work is None:
        import tempfile

        args.work = Path(tempfile.mkdtemp(prefix="tandem-kill-loop-"))
    result = run(args.kills, args.work, seed=args.seed, real=args.real, max_delay=args.max_delay)
    summary = {k: v for k, v in result.items() if k != "rounds"}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
