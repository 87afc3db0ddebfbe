import asyncio

from rtserver.history import TurnNode
from rtserver.journal import Journal
from rtserver.store import LocalStore, SessionData


async def test_group_commit_writes_concurrent_records_under_few_fsyncs(tmp_path):
    j = Journal(tmp_path / "j")
    j.open()
    await asyncio.gather(*(j.append({"n": i}) for i in range(200)))
    await j.close()
    assert [r["n"] for r in Journal.read(tmp_path / "j")] == list(range(200))
    assert j.writes < 200


async def test_torn_last_line_is_ignored(tmp_path):
    (tmp_path / "j").write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": ')
    assert [r["n"] for r in Journal.read(tmp_path / "j")] == [1, 2]


async def test_store_replays_sessions_turns_heads_updates_and_closes(tmp_path):
    s = LocalStore(tmp_path, "n1", 16)
    await s.open()
    await s.create(SessionData("a", "P", {"seed": 1}, "default"))
    await s.create(SessionData("b", None, {}, "default"))
    await s.save_turn("a", TurnNode(1, 0, "say", "hi", "hello", "stop"))
    await s.save_turn("a", TurnNode(2, 1, "say", "more", "sure", "stop", grammar='root ::= "sure"'))
    await s.set_head("a", 1)
    await s.update("a", "P2", {"seed": 2})
    await s.delete("b")
    await s.close()
    again = LocalStore(tmp_path, "n1", 16)
    sessions = await again.open()
    await again.close()
    assert set(sessions) == {"a"}
    a = sessions["a"]
    assert (a.persona, a.params, a.history.head) == ("P2", {"seed": 2}, 1)
    assert [n.reply for n in a.history.path()] == ["hello"]
    assert set(a.history.nodes) == {1, 2}  # rolled-back turns stay in the tree
    assert a.history.next_tid == 3
    assert a.history.nodes[2].grammar == 'root ::= "sure"' and a.history.nodes[1].grammar is None
