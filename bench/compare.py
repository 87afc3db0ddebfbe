"""rtserver beside llama.cpp's `llama-server` and llama-cpp-python's `python -m llama_cpp.server` (issue 3), in one
run: the same GGUF, the same conversations (bench/conversations.py: N sessions x 10 turns with think time,
greedy sampling), the same llama.cpp threads and core, and the same KV memory: a context holding about a quarter
of the sessions at once (``slots = max(1, N // 4)`` sequences of ``--ctx`` tokens) and the same host-memory
budget for KV saved from it (``--host-mb``).

Each server runs with its best settings for this workload:
  - rtserver: ``--slots S --n-ctx C``, ``kv_host_mb = H`` (its defaults otherwise; admission bounds raised so
    that it queues like the others instead of answering ``busy``);
  - llama-server: ``-c S*C -np S --kv-unified --cache-ram H -fa off --jinja``, prompts sent with
    ``cache_prompt: true`` (slots chosen by its prompt similarity; flash attention off as in rtserver, measured
    faster on CPU);
  - llama_cpp.server: ``--n_ctx S*C --cache true --cache_type ram --cache_size H MiB --interrupt_requests
    false`` (one sequence; its RAM cache of whole-context states matched by prefix; by default a new request
    aborts the one streaming, which would cut replies off).

rtserver can also run with other settings beside its defaults, named ``rtserver[KEY=VALUE]`` (an
``RTSERVER_KEY`` variable; ';' between several): ``--servers 'rtserver,rtserver[time_slice=0],llama-server'``;
llama-server and llama_cpp.server with more flags as ``llama-server[-sps 0.98]``,
``llama-cpp-python[--type_k 8]``.

Server pinned to one core with one llama.cpp thread, the load generator to the other; a one-turn warm-up before
each measured run. Build the peers first with bench/build_peers.sh.

    python -m bench.compare --model rtserver/models/rtserver-tiny-q4_0.gguf --sessions 1,4,16,64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .common import ROOT, free_port, median, pinned, run_json, start_rtserver, stop, write_json

LLAMA_SERVER = ROOT / "build" / "peers" / "llama-server"
SERVERS = ("rtserver", "llama-server", "llama-cpp-python")


def _wait_http(proc: subprocess.Popen[Any], url: str, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # start-up poll of another program's readiness, not a test's synchronisation
    raise RuntimeError(f"{url} not ready after {timeout} s")


def start(name: str, a: argparse.Namespace, slots: int, tmp: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Start one server; return it, its URL and the load generator's --target."""
    threads = str(a.threads)
    if name.startswith("rtserver"):
        env = rtserver_env(a.host_mb, variant(name))
        args = ["--model", a.model, "--threads", threads, "--slots", str(slots), "--n-ctx", str(a.ctx)]
        proc, url = start_rtserver(args, a.server_cpus, tmp, env=env)
        return proc, url, "rtserver"
    port = free_port()
    if name.startswith("llama-server"):
        cmd = [str(LLAMA_SERVER), "-m", a.model, "--host", "127.0.0.1", "--port", str(port)]
        kv = "--kv-unified" if a.llama_server_kv == "unified" else "--no-kv-unified"
        cmd += ["-t", threads, "-tb", threads, "-c", str(slots * a.ctx), "-np", str(slots), kv]
        cmd += ["--cache-ram", str(a.host_mb), "-fa", "off", "--jinja", "--no-webui"]
        cmd += " ".join(variant(name)).split()  # llama-server[-sps 0.98]: more flags for this one
        health = f"http://127.0.0.1:{port}/health"
    else:
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", a.model, "--host", "127.0.0.1"]
        cmd += ["--port", str(port), "--n_threads", threads, "--n_threads_batch", threads]
        cmd += ["--n_ctx", str(slots * a.ctx), "--cache", "true", "--cache_type", "ram"]
        cmd += ["--cache_size", str(a.host_mb << 20), "--flash_attn", "false", "--interrupt_requests", "false"]
        cmd += " ".join(variant(name)).split()  # llama-cpp-python[--type_k 8]
        health = f"http://127.0.0.1:{port}/v1/models"
    log = open(Path(a.logs or tmp) / f"{name.split('[')[0]}-slots{slots}.log", "a")
    proc = subprocess.Popen(pinned(cmd, a.server_cpus), stdout=log, stderr=subprocess.STDOUT, text=True)
    _wait_http(proc, health)
    return proc, f"http://127.0.0.1:{port}", "openai"


def variant(name: str) -> list[str]:
    """``rtserver[time_slice=0;slots=8]`` -> ["time_slice=0", "slots=8"]."""
    return name[name.index("[") + 1 : name.rindex("]")].split(";") if "[" in name else []


def rtserver_env(host_mb: int, settings: list[str]) -> dict[str, str]:
    """rtserver's environment here: the host KV budget, admission bounds raised so that it queues like the others
    instead of answering ``busy``, no fsync; then ``settings`` (KEY=VALUE) as RTSERVER_KEY variables."""
    return {
        "RTSERVER_KV_HOST_MB": str(host_mb),
        "RTSERVER_MAX_QUEUE_WAIT": "3600",
        "RTSERVER_MAX_QUEUED_TURNS": "100000",
        "RTSERVER_FSYNC": "false",
        **{f"RTSERVER_{k.strip().upper()}": v.strip() for k, v in (p.split("=", 1) for p in settings if p)},
    }


def conversation_args(p: argparse.ArgumentParser) -> None:
    """The options ``converse`` and the servers' start read (bench.compare, bench.first_delta)."""
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--think", type=float, default=2.0)
    p.add_argument("--pace", choices=["exponential", "steady"], default="exponential", help="think times")
    p.add_argument("--max-tokens", type=int, default=24)
    p.add_argument("--ctx", type=int, default=512, help="context tokens per slot (one conversation fits)")
    p.add_argument("--host-mb", type=int, default=256, help="host-memory KV cache budget, every server")
    p.add_argument("--persona-file", default="", help="a longer persona, e.g. bench/personas/bram-card.txt")
    p.add_argument("--cap", type=float, default=240.0, help="seconds after which no new turn starts")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--replies", action="store_true", help="keep every session's replies in the results")
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")


def converse(url: str, target: str, n: int, a: argparse.Namespace) -> dict[str, Any]:
    """One warm-up turn, then the measured conversations (bench/conversations.py) of ``n`` sessions."""
    base = ["-m", "bench.conversations", "--target", target, "--url", url, "--max-tokens", str(a.max_tokens)]
    run_json([*base, "--sessions", "1", "--turns", "1", "--think", "0", "--seed", "0"], a.client_cpus)
    if a.persona_file:
        base += ["--persona-file", a.persona_file]
    conv = [*base, "--sessions", str(n), "--turns", str(a.turns), "--think", str(a.think), "--pace", a.pace]
    if a.replies:
        conv.append("--replies")
    return run_json([*conv, "--cap", str(a.cap), "--seed", str(a.seed)], a.client_cpus)


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return round(next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024, 1)


def one(name: str, n: int, a: argparse.Namespace) -> dict[str, Any]:
    slots = max(1, n // 4)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, target = start(name, a, slots, Path(tmp))
        try:
            result = converse(url, target, n, a)
            result["peak_rss_mib"] = peak_rss_mib(proc.pid)
            if name.startswith("rtserver"):
                result["engine"] = engine_counters(url)
            result["slots"] = slots
            return result
        finally:
            stop(proc)


def engine_counters(ws_url: str) -> dict[str, float]:
    """rtserver's engine counters (prefilled, reused, KV saved/restored/dropped tokens...) from /metrics."""
    with urllib.request.urlopen(ws_url.replace("ws://", "http://").rstrip("/") + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("rtserver_engine_"):
            key, value = line.rsplit(" ", 1)
            out[key.split("{")[0].removeprefix("rtserver_engine_")] = float(value)
    return out


def _med(runs: list[dict[str, Any]], *path: str) -> float | None:
    vals = []
    for r in runs:
        v: Any = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        vals.append(v)
    return median(vals)


def digest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "ttft_p50_ms": _med(runs, "ttft_ms", "p50"),
        "ttft_p99_ms": _med(runs, "ttft_ms", "p99"),
        "warm_ttft_p50_ms": _med(runs, "ttft_ms_warm", "p50"),
        "warm_ttft_p99_ms": _med(runs, "ttft_ms_warm", "p99"),
        "gap_p50_ms": _med(runs, "gap_ms", "p50"),
        "gap_p99_ms": _med(runs, "gap_ms", "p99"),
        "turn_p50_ms": _med(runs, "turn_ms", "p50"),
        "turn_p99_ms": _med(runs, "turn_ms", "p99"),
        "output_tok_s": _med(runs, "output_tok_s"),
        "output_tok_s_wall": _med(runs, "output_tok_s_wall"),
        "stream_tok_s_p50": _med(runs, "stream_tok_s", "p50"),
        "turns_done": _med(runs, "turns_done"),
        "turns_planned": runs[0]["turns_planned"],
        "peak_rss_mib": _med(runs, "peak_rss_mib"),
        "ttft_ms_by_turn": {
            i: [median([r["ttft_ms_by_turn"].get(i, {}).get(q) for r in runs]) for q in ("p50", "p99")]
            for i in runs[0]["ttft_ms_by_turn"]
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="GGUF file every server loads")
    p.add_argument("--sessions", default="1,4,16,64", help="comma-separated session counts")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    conversation_args(p)
    p.add_argument("--name", default="", help="results file name (default: compare-<model stem>)")
    p.add_argument("--logs", default="", help="keep the peers' server logs in this folder")
    p.add_argument(
        "--llama-server-kv",
        choices=["unified", "split"],
        default="unified",
        help="llama-server's KV: unified (its recommended setting for --parallel) or split per slot",
    )
    a = p.parse_args()
    a.model = str(Path(a.model).resolve())
    servers = a.servers.split(",")
    if unknown := [s for s in servers if s.split("[")[0] not in SERVERS]:
        sys.exit(f"unknown servers {unknown}: choose from {', '.join(SERVERS)} (rtserver[KEY=VALUE] for a variant)")
    if any(s.startswith("llama-server") for s in servers) and not LLAMA_SERVER.exists():
        sys.exit(f"{LLAMA_SERVER} is missing: build it with bench/build_peers.sh")
    out: dict[str, Any] = {"params": vars(a), "results": {}}
    for n in (int(x) for x in a.sessions.split(",")):
        # Rounds: every server once per round, so that this VM's drift in speed (up to a quarter within an hour)
        # falls on all of them alike; each round's ratio to rtserver is kept beside the medians.
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for i in range(a.runs):
            for name in servers:
                r = one(name, n, a)
                runs[name].append(r)
                print(f"N={n} {name} run {i + 1}: {json.dumps(r)}", file=sys.stderr, flush=True)
        res = out["results"].setdefault(str(n), {})
        for name in servers:
            res[name] = {"digest": digest(runs[name]), "runs": runs[name]}
        if "rtserver" in res:
            rt = res["rtserver"]["digest"]
            for name in servers:
                if name != "rtserver" and rt["ttft_p50_ms"]:
                    d = res[name]["digest"]
                    d["ttft_p50_vs_rtserver"] = round((d["ttft_p50_ms"] or 0) / rt["ttft_p50_ms"], 2)
                    d["tok_s_vs_rtserver"] = round((d["output_tok_s"] or 0) / (rt["output_tok_s"] or 1), 2)
                    d["ttft_p50_vs_rtserver_by_round"] = [
                        round(r["ttft_ms"]["p50"] / q["ttft_ms"]["p50"], 2)
                        for r, q in zip(runs[name], runs["rtserver"], strict=True)
                        if r["ttft_ms"].get("p50") and q["ttft_ms"].get("p50")
                    ]
        write_json(a.name or f"compare-{Path(a.model).stem}", {**out, "pid": os.getpid()})
    print(table(out))


def table(out: dict[str, Any]) -> str:
    rows = [
        "| N | server | TTFT p50 / p99 ms | warm TTFT p50 / p99 ms | gap p50 / p99 ms | last delta p50 / p99 ms | "
        "output tok/s (all) | tok/s per reply p50 | turns | peak RSS MiB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n, res in out["results"].items():
        for name, r in res.items():
            d = r["digest"]
            rows.append(
                f"| {n} | {name} | {d['ttft_p50_ms']} / {d['ttft_p99_ms']} | "
                f"{d['warm_ttft_p50_ms']} / {d['warm_ttft_p99_ms']} | "
                f"{d['gap_p50_ms']} / {d['gap_p99_ms']} | {d['turn_p50_ms']} / {d['turn_p99_ms']} | "
                f"{d['output_tok_s']} | {d['stream_tok_s_p50']} | "
                f"{d['turns_done']}/{d['turns_planned']} | {d['peak_rss_mib']} |"
            )
    for n, res in out["results"].items():
        for name, r in res.items():
            if by_round := r["digest"].get("ttft_p50_vs_rtserver_by_round"):
                rows.append(f"\nN={n} {name}: TTFT p50 / rtserver's, round by round: {by_round}")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
