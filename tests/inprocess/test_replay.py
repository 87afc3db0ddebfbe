"""The replay tool against in-process servers: a session recorded by rtclient is played against a fresh server,
turn texts compared, copies run as a load test, and ``diff`` finds a changed reply."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from rtclient import Client
from rtprotocol.recording import load

from rtserver.cli import main as cli_main
from rtserver.engine.scripted import SteppedEngine
from rtserver.replay import diff as D
from rtserver.replay import run as R
from rtserver.replay.record import record

CARD = Path(__file__).parent.parent / "data" / "mira.card.json"


def free() -> SteppedEngine:
    engine = SteppedEngine()
    engine.run_freely()
    return engine


async def record_story(url: str, path: Path) -> list[str]:
    """A short card story with fixed seeds (and one regenerate without a seed); the replies' texts."""
    async with Client(url, record=path) as c:
        s = await c.open_session(card=CARD, user="Ada", params={"seed": 5})
        texts = [(await (await s.say("Is the lamp lit?")).result()).text]
        await s.update(vars={"coins": 3})
        texts.append((await (await s.say("Here are three coins.")).result()).text)
        texts.append((await (await s.regenerate()).result()).text)  # draws a seed: not compared
        texts.append((await (await s.regenerate(params={"seed": 9})).result()).text)
        await s.close()
    return texts


async def test_a_recorded_session_replays_identically_on_a_fresh_server(serve, tmp_path):
    first = await serve(engine=free(), data_dir=str(tmp_path / "a"))
    rec = tmp_path / "story.jsonl"
    texts = await record_story(first.url, rec)
    recording = load(rec)
    assert recording.header["rtreplay"] == 1 and recording.entries[0].frame["t"] == "hello"
    fresh = await serve(engine=free(), data_dir=str(tmp_path / "b"))
    out = tmp_path / "replayed.jsonl"
    report = await R.run(recording, fresh.url, speed=0, out=out)
    assert report.code == R.OK and report.turns == 4
    assert report.compared == 3  # the regenerate without a seed is not deterministic
    assert [t["same"] for t in report.per_turn] == [True, True, None, True]
    replayed = [t.text for t in D.by_connection(load(out).entries)[0]]
    assert [replayed[i] for i in (0, 1, 3)] == [texts[i] for i in (0, 1, 3)]
    assert replayed[2] != texts[2]  # a new seed drawn again
    assert D.diff(recording, load(out), threshold_ms=1e9) == [D.Change(0, 2, "text", texts[2], replayed[2])]


async def test_a_changed_reply_shows_in_diff_and_fails_the_run(serve, tmp_path):
    srv = await serve(engine=free())
    rec = tmp_path / "story.jsonl"
    texts = await record_story(srv.url, rec)
    lines = rec.read_text().splitlines()
    changed = tmp_path / "changed.jsonl"
    for i, line in enumerate(lines):  # the first reply's first piece, as another server might have said it
        entry = json.loads(line) if i else None
        if entry and entry["f"]["t"] == "delta":
            entry["f"]["x"] = "Changed"
            lines[i] = json.dumps(entry)
            break
    changed.write_text("\n".join(lines) + "\n")
    changes = D.diff(load(rec), load(changed), threshold_ms=1e9)
    assert [(c.turn, c.what, c.a) for c in changes] == [(0, "text", texts[0])]
    assert changes[0].b.startswith("Changed") and D.exit_code(changes) == D.CHANGED
    assert D.exit_code(D.diff(load(rec), load(rec))) == D.SAME
    report = await R.run(load(changed), srv.url, speed=0)
    assert report.code == R.DIFFERS and [(d["turn"], d["got"]) for d in report.differ] == [(0, texts[0])]


async def test_copies_turn_a_recording_into_a_load_test(serve, tmp_path):
    srv = await serve(engine=free(), max_sessions_per_connection=64)
    rec = tmp_path / "story.jsonl"
    await record_story(srv.url, rec)
    report = await R.run(load(rec), srv.url, speed=0, copies=50)
    s = report.summary()
    assert (report.code, s["copies"], s["turns"], s["deterministic_compared"], s["differ"]) == (R.OK, 50, 200, 150, 0)
    assert s["turns_per_s"] > 0 and s["first_delta_ms"]["replayed"]["p99"] is not None


async def test_the_command_line_reports_and_exits_with_a_code_ci_can_use(serve, tmp_path, capsys):
    srv = await serve(engine=free())
    rec = tmp_path / "story.jsonl"
    await record_story(srv.url, rec)
    report = tmp_path / "report.json"

    def cli(*argv: str) -> int:
        try:
            cli_main(list(argv))
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    code = await asyncio.to_thread(
        cli, "replay", "run", str(rec), "--url", srv.url, "--speed", "max", "--copies", "3", "--json", str(report),
        "--turns",
    )  # fmt: skip
    assert code == 0
    assert json.loads(report.read_text())["turns"] == 12
    out = capsys.readouterr().out
    assert "12 turns (3 copies)" in out and out.count("same text") == 3 and "turn 2 regenerate" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a recording\n")
    assert await asyncio.to_thread(cli, "replay", "run", str(bad), "--url", srv.url) == R.BAD_INPUT
    assert await asyncio.to_thread(cli, "replay", "diff", str(rec), str(rec)) == D.SAME


async def test_a_server_records_chosen_sessions_itself(serve, tmp_path):
    folder = tmp_path / "recordings"
    srv = await serve(engine=free(), record_dir=str(folder), record_sessions="*")
    texts = await record_story(srv.url, tmp_path / "client-side.jsonl")
    (path,) = folder.iterdir()
    server_side, client_side = load(path), load(tmp_path / "client-side.jsonl")
    assert [e.frame["t"] for e in server_side.entries] == [e.frame["t"] for e in client_side.entries]
    assert [t.text for t in D.by_connection(server_side.entries)[0]] == texts
    fresh = await serve(engine=free(), data_dir=str(tmp_path / "fresh"))
    assert (await R.run(server_side, fresh.url, speed=0)).code == R.OK


async def test_the_recording_proxy_records_any_client(serve, tmp_path):
    srv = await serve(engine=free())
    out, stop = tmp_path / "proxy.jsonl", asyncio.Event()
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    proxy = asyncio.create_task(record(str(out), srv.url, "127.0.0.1", 0, listening=port.set_result, stop=stop))
    texts = await record_story(f"ws://127.0.0.1:{await port}/", tmp_path / "client-side.jsonl")
    stop.set()
    await proxy
    recorded = load(out)
    assert recorded.header["url"] == srv.url
    assert [t.text for t in D.by_connection(recorded.entries)[0]] == texts
    assert [e.frame for e in recorded.entries] == [e.frame for e in load(tmp_path / "client-side.jsonl").entries]
