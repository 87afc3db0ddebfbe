"""Where a first delta's time goes inside rtserver: the conversations of bench.compare against one `rtserver serve`
whose engine and session code are wrapped with timers (this module started as the server, ``serve`` first).

Per turn, from the line reaching the session (start_turn) to its first delta written to the socket: the way to the
engine, the engine's part (and in it: waiting for a step under way, taking a sequence — evicting, restoring —,
preparing the prompt, decoding, sampling) and the way back; and ``first_step``, the one llama.cpp step whose logits
gave the first token (the turn's new prompt tokens, in a step of their own where other turns are generating: a floor
under any server's first delta for the same text on this core, since none can answer before its model has read the
line). Beside each engine phase's time, the CPU time its thread spent in it (``cpu_per_call_p50``: equal to
``per_call_p50`` where the phase never waits for the other thread or the core), and the event loop's CPU time on the
way to the engine. The timers cost a few microseconds per call; the figures are for comparing one build with another
on the same machine, not with the other benchmarks (``first_step`` is the exception: one timer around one call, set
beside the first deltas of a bench.compare run in the same sitting).

    python -m bench.first_delta --model rtserver/models/rtserver-tiny-q4_0.gguf --sessions 16
"""

from __future__ import annotations

import argparse
import atexit
import bisect
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import median, start_rtserver, stop, write_json
from .compare import conversation_args, converse, rtserver_env

PHASES = ("_slot", "_evict", "_save", "_restore", "_start", "_prompt", "_tokenize", "_compact", "decode", "_sample")


def serve(argv: list[str]) -> None:
    """Run `rtserver serve` with timers; write what they saw to $FIRST_DELTA_OUT at exit."""
    from rtserver.cli import main
    from rtserver.engine import llama as L
    from rtserver.engine.base import Token
    from rtserver.engine.kv import KV
    from rtserver.engine.outbox import Job
    from rtserver.engine.planner import Planner
    from rtserver.engine.scheduler import Scheduler
    from rtserver.engine.step import Stepper
    from rtserver.sessions import session as S
    from rtserver.sessions import turns as T

    # Each phase's name (as the results have them) -> the method that does it.
    where: dict[str, tuple[Any, str]] = {
        "_slot": (KV, "take"),
        "_evict": (KV, "evict"),
        "_save": (KV, "save"),
        "_restore": (KV, "put_in"),
        "_start": (Scheduler, "start"),
        "_prompt": (Planner, "prompt"),
        "_tokenize": (Planner, "tokenize"),
        "_compact": (KV, "compact"),
        "_sample": (Stepper, "_sample"),
    }

    clock = time.perf_counter
    spans: list[tuple[float, float, str]] = []  # engine phases (the worker thread)
    cpu: dict[str, list[float]] = {}  # each phase's thread CPU time, per call
    turns: dict[str, dict[str, float]] = {}  # sid -> the current turn's stamps
    done: list[dict[str, float]] = []

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0, c0 = clock(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                spans.append((t0, clock(), name))
                cpu.setdefault(name, []).append(time.thread_time() - c0)

        return wrapper

    for name in PHASES:
        if name == "decode":
            import llama_cpp

            setattr(llama_cpp, "llama_decode", timed("decode", llama_cpp.llama_decode))  # noqa: B010 (untyped)
        else:
            cls, method = where[name]
            setattr(cls, method, timed(name, getattr(cls, method)))

    start_turn, generate, emit, session_emit = (
        T.Turns.start,
        L.LlamaEngine.generate,
        Job.emit,
        S.Session.emit,
    )

    async def on_start(self: Any, s: Any, *a: Any, **k: Any) -> Any:
        turns[s.sid] = {"start": clock(), "start_cpu": time.thread_time()}
        return await start_turn(self, s, *a, **k)

    def on_generate(self: Any, request: Any) -> Any:
        if (t := turns.get(request.key)) is not None:
            t["submit"], t["submit_cpu"] = clock(), time.thread_time()
        return generate(self, request)

    def on_emit(self: Any, event: Any) -> None:
        if isinstance(event, Token) and (t := turns.get(self.request.key)) is not None and "token" not in t:
            t["token"] = clock()
        emit(self, event)

    def on_session_emit(self: Any, frame: Any, now: float) -> None:
        t = turns.get(self.sid)
        session_emit(self, frame, now)
        if t is not None and frame.get("t") == "delta" and "written" not in t and "token" in t:
            t["written"] = clock()
            done.append(t)

    T.Turns.start = on_start  # type: ignore[method-assign]
    L.LlamaEngine.generate = on_generate  # type: ignore[method-assign]
    Job.emit = on_emit  # type: ignore[method-assign]
    S.Session.emit = on_session_emit  # type: ignore[method-assign]

    def dump() -> None:
        Path(os.environ["FIRST_DELTA_OUT"]).write_text(json.dumps({"spans": spans, "turns": done, "cpu": cpu}))

    atexit.register(dump)
    main(argv)


def breakdown(spans: list[list[Any]], turns: list[dict[str, float]], cpu: dict[str, list[float]]) -> dict[str, Any]:
    """Per turn, each engine phase's time between the turn's submission and its first token; medians and means.
    Per call, each phase's time and its thread's CPU time (medians)."""
    spans.sort()
    starts = [s[0] for s in spans]
    per: dict[str, list[float]] = {p: [] for p in (*PHASES, "waiting", "first_step")}
    for t in turns:
        lo, hi = t["submit"], t["token"]
        acc = dict.fromkeys(PHASES, 0.0)
        first = None
        last_decode = 0.0  # the step whose logits gave the first token: the turn's prompt, decoded
        for t0, t1, name in spans[bisect.bisect_left(starts, lo - 1.0) :]:
            if t0 > hi:
                break
            if (overlap := min(t1, hi) - max(t0, lo)) > 0:
                acc[name] += overlap
            if first is None and t0 >= lo and name == "_slot":
                first = t0
            if name == "decode" and t0 >= lo and t1 <= hi:
                last_decode = t1 - t0
        for name, v in acc.items():
            per[name].append(v * 1000)
        per["waiting"].append(((first or lo) - lo) * 1000)  # a step under way, or the worker waking
        per["first_step"].append(last_decode * 1000)
    out: dict[str, Any] = {
        name: {"p50": _ms(median(v)), "mean": _ms(sum(v) / len(v) if v else None)} for name, v in per.items()
    }
    for name, calls in cpu.items():
        out[name]["per_call_p50"] = _ms(median([(t1 - t0) * 1000 for t0, t1, n in spans if n == name]))
        out[name]["cpu_per_call_p50"] = _ms(median([c * 1000 for c in calls]))
    legs: dict[str, Callable[[dict[str, float]], float]] = {
        "to_engine": lambda t: t["submit"] - t["start"],
        "engine": lambda t: t["token"] - t["submit"],
        "to_socket": lambda t: t["written"] - t["token"],
        "server": lambda t: t["written"] - t["start"],
    }
    for name, f in legs.items():
        out[name] = {"p50": _ms(median([f(t) * 1000 for t in turns]))}
    out["to_engine"]["cpu_p50"] = _ms(median([(t["submit_cpu"] - t["start_cpu"]) * 1000 for t in turns]))
    return out


def _ms(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve(sys.argv[1:])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--sessions", type=int, default=16)
    conversation_args(p)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an rtserver setting (repeat)")
    p.add_argument("--name", default="first-delta")
    a = p.parse_args()
    slots = max(1, a.sessions // 4)
    with tempfile.TemporaryDirectory() as tmp:
        env = {"FIRST_DELTA_OUT": f"{tmp}/spans.json", **rtserver_env(a.host_mb, a.set)}
        args = ["--model", str(Path(a.model).resolve()), "--threads", "1", "--slots", str(slots)]
        proc, url = start_rtserver([*args, "--n-ctx", str(a.ctx)], a.server_cpus, Path(tmp), env, "bench.first_delta")
        try:
            client = converse(url, "rtserver", a.sessions, a)
        finally:
            stop(proc)
        seen = json.loads(Path(f"{tmp}/spans.json").read_text())
    result = {
        "params": vars(a),
        "client_ttft_ms": client["ttft_ms"],
        "server": breakdown(seen["spans"], seen["turns"], seen["cpu"]),
        "turns_timed": len(seen["turns"]),
    }
    write_json(a.name, result)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
