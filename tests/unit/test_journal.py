"""The journal's framing and group commit, and the embedded store on top: damage costs only the damaged record,
a torn tail is cut, a failed write leaves nothing behind, sessions come back as they left."""

import asyncio
import errno
import os

import pytest

from rtserver.errors import Fenced, StoreFailed
from rtserver.sessions import records as R
from rtserver.sessions.history import TurnNode
from rtserver.sessions.journal import MAGIC, Writer, frame_record, scan
from rtserver.sessions.local import LocalStore
from rtserver.sessions.store import TID_BLOCK, FrameLogState, SessionData


def three() -> tuple[bytes, list[int]]:
    recs = [frame_record({"n": i, "pad": "x" * 40}) for i in range(3)]
    offsets = [0, len(recs[0]), len(recs[0]) + len(recs[1])]
    return b"".join(recs), offsets


def test_a_flipped_byte_costs_one_record_and_is_reported():
    data, at = three()
    bad = bytearray(data)
    bad[at[1] + 20] ^= 0xFF  # inside the middle record's payload
    found = scan(bytes(bad))
    assert [r["n"] for _, r in found.records] == [0, 2]
    assert [(d.offset, d.why) for d in found.damage] == [(at[1], "checksum mismatch")]
    assert found.torn_at is None


def test_a_damaged_length_loses_one_record_not_the_rest():
    data, at = three()
    bad = bytearray(data)
    bad[at[1] + 6] = 0x7F  # the length's high byte: the record now claims to run far past the end
    found = scan(bytes(bad))
    assert [r["n"] for _, r in found.records] == [0, 2]
    assert len(found.damage) == 1


def test_a_torn_tail_is_told_apart_from_damage():
    data, at = three()
    found = scan(data[: at[2] + 9])  # the last record cut mid-header
    assert [r["n"] for _, r in found.records] == [0, 1]
    assert found.torn_at == at[2] and not found.damage


async def test_group_commit_writes_concurrent_records_of_many_files_in_few_batches(tmp_path):
    w = Writer()
    w.start()
    files = [tmp_path / f"f{i}" / "log" for i in range(3)]
    await asyncio.gather(*(w.submit("append", files[i % 3], frame_record({"n": i})) for i in range(300)))
    await w.close()
    for k, path in enumerate(files):
        assert [r["n"] for _, r in scan(path.read_bytes()).records] == list(range(k, 300, 3))
    assert w.batches < 300


async def test_a_failed_write_leaves_nothing_behind_and_the_store_recovers(tmp_path, monkeypatch):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("a")
    await store.create(SessionData("a", "P", {}, "default"), gen)
    size = store.path("a").stat().st_size
    real = os.write

    def full(fd, data):
        real(fd, bytes(data)[:5])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StoreFailed):
        await store.save_turn("a", gen, TurnNode(1, 0, "say", "hi", "hello", "stop"))
    assert store.degraded and store.path("a").stat().st_size == size
    monkeypatch.setattr(os, "write", real)
    await store.save_turn("a", gen, TurnNode(1, 0, "say", "hi", "hello", "stop"))
    assert not store.degraded
    await store.close()
    found = await LocalStore(tmp_path, "n1").load("a")
    assert found is not None and [n.reply for n in found.data.history.path()] == ["hello"]


async def test_a_session_comes_back_as_it_left(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("a")
    data = SessionData("a", "P", {"seed": 1}, "default")
    reserved = await store.create(data, gen)
    for node in (TurnNode(1, 0, "say", "hi", "hello", "stop"), TurnNode(2, 1, "say", "more", "sure", "stop")):
        await store.save_turn("a", gen, node)
        data.history.commit(node)
    await store.set_head("a", gen, 1)
    data.history.head = 1
    await store.update("a", gen, "P2", {"seed": 2})
    data.persona, data.params = "P2", {"seed": 2}
    data.history.next_tid = 4  # tid 3 was handed out and failed: it must not come back
    await store.park("a", gen, data, reserved, FrameLogState("ep1", 7, [b"f6", b"f7"], 123.0))
    with pytest.raises(Fenced):  # parked: this generation may not write it any more
        await store.set_head("a", gen, 2)
    await store.close()
    found = await LocalStore(tmp_path, "n1").load("a")
    assert found is not None
    a = found.data
    assert (a.persona, a.params, a.history.head, set(a.history.nodes)) == ("P2", {"seed": 2}, 1, {1, 2})
    assert a.history.next_tid == 4 and found.reserved == TID_BLOCK
    assert found.log == FrameLogState("ep1", 7, [b"f6", b"f7"], 123.0)


async def test_turn_ids_handed_out_before_a_crash_are_never_given_again(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("a")
    reserved = await store.create(SessionData("a", None, {}, "default"), gen)
    await store.save_turn("a", gen, TurnNode(1, 0, "say", "hi", "hello", "stop"))
    await store.reserve_tids("a", gen, reserved + TID_BLOCK)
    await store.close()  # no park: as after kill -9
    found = await LocalStore(tmp_path, "n1").load("a")
    assert found is not None and found.log is None
    assert found.data.history.next_tid == reserved + TID_BLOCK + 1


async def test_damage_mid_file_is_skipped_reported_and_kept_aside_when_compacted(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("a")
    data = SessionData("a", "P", {}, "default")
    reserved = await store.create(data, gen)
    for i in range(1, 4):
        await store.save_turn("a", gen, TurnNode(i, i - 1, "say", f"q{i}", f"r{i}", "stop"))
    raw = bytearray(store.path("a").read_bytes())
    second = [m for m in range(len(raw)) if raw[m : m + 4] == MAGIC][2]  # open, turn 1, turn 2, turn 3
    raw[second + 30] ^= 0x01
    store.path("a").write_bytes(bytes(raw))
    found = await store.load("a")
    assert found is not None
    assert sorted(found.data.history.nodes) == [1, 3] and store.damaged_records == 1
    assert [n.tid for n in found.data.history.path()] == [1, 3]  # the turn after the lost one hangs on the one before
    gen = await store.acquire("a")
    await store.park("a", gen, found.data, found.reserved, FrameLogState("e", 0, [], 0.0))
    kept = list((tmp_path / "damaged").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == bytes(raw)
    assert not scan(store.path("a").read_bytes()).damage  # the live file was rewritten whole
    assert reserved == TID_BLOCK


async def test_a_torn_tail_is_cut_off_when_the_session_loads(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("a")
    await store.create(SessionData("a", None, {}, "default"), gen)
    await store.save_turn("a", gen, TurnNode(1, 0, "say", "hi", "hello", "stop"))
    good = store.path("a").stat().st_size
    torn = R.turn_record("a", TurnNode(2, 1, "say", "x", "y", "stop"))[:-3]
    store.path("a").write_bytes(store.path("a").read_bytes() + torn)
    found = await store.load("a")
    assert found is not None and sorted(found.data.history.nodes) == [1]
    assert store.path("a").stat().st_size == good and store.damaged_records == 0


async def test_compaction_keeps_a_file_within_twice_its_live_state(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    gen = await store.acquire("a")
    data = SessionData("a", "P", {}, "default")
    reserved = await store.create(data, gen)
    node = TurnNode(1, 0, "say", "hi", "hello", "stop")
    await store.save_turn("a", gen, node)
    data.history.commit(node)
    for _ in range(200):
        await store.set_head("a", gen, 1)
    log = FrameLogState("e", 3, [b"x" * 10], 1.0)
    await store.park("a", gen, data, reserved, log)
    assert store.path("a").stat().st_size <= 2 * len(R.compacted(data, reserved, log))
    found = await store.load("a")
    assert found is not None and found.log == log and found.data.history.head == 1


async def test_expiry_deletes_sessions_unused_past_the_ttl_and_nothing_else(tmp_path):
    store = LocalStore(tmp_path, "n1", session_ttl=100.0)
    await store.open()
    for sid in ("old", "new", "oldbutheld"):
        await store.create(SessionData(sid, None, {}, "default"), await store.acquire(sid))
    now = 1_000_000.0
    for sid, mtime in (("old", now - 101), ("new", now - 99), ("oldbutheld", now - 500)):
        os.utime(store.path(sid), (mtime, mtime))
    assert await store.expire(now, keep={"oldbutheld"}) == 1
    assert not store.path("old").exists() and store.path("new").exists() and store.path("oldbutheld").exists()
    assert await store.load("old") is None


async def test_ids_that_are_not_session_ids_never_reach_the_file_system(tmp_path):
    store = LocalStore(tmp_path, "n1")
    await store.open()
    assert await store.load("../../etc/passwd") is None and await store.load("") is None


async def test_the_journal_of_earlier_versions_is_migrated(tmp_path):
    (tmp_path / "sessions.journal").write_bytes(
        b'{"op":"open","sid":"a","persona":"P","params":{},"model":"default"}\n'
        b'{"op":"turn","sid":"a","tid":1,"parent":0,"kind":"say","user":"hi","reply":"yo","reason":"stop"}\n'
        b'{"op":"open","sid":"b","persona":null,"params":{},"model":"default"}\n{"op":"close","sid":"b"}\n'
    )
    store = LocalStore(tmp_path, "n1")
    await store.open()
    found = await store.load("a")
    assert found is not None and [n.reply for n in found.data.history.path()] == ["yo"]
    assert await store.load("b") is None
    assert (tmp_path / "sessions.journal.migrated").exists() and not (tmp_path / "sessions.journal").exists()
    await store.close()
