"""The audit log: the hash chain finds edits, removals, insertions and a cut-off end; erased bodies keep it
verifiable; PII is redacted by kind; the writer never drops a record and sheds turns when its disk is slow."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from rtserver.audit import redact
from rtserver.audit.chain import ERASED, Head, seal, verify
from rtserver.audit.log import AuditLog, files


def chain(n: int) -> list[bytes]:
    head = Head()
    return [seal(head, {"kind": "turn", "sid": f"s{i % 3}", "user": "ann"}, {"text": f"line {i}"}) for i in range(n)]


def problems(lines: list[bytes], checkpoints: list[dict] | None = None) -> list[str]:
    return [p.what for p in verify(lines, checkpoints or [])[1]]


def edit(line: bytes, where: str, key: str, value: object) -> bytes:
    rec = orjson.loads(line)
    rec[where][key] = value
    return orjson.dumps(rec) + b"\n"


def test_an_intact_chain_verifies():
    lines = chain(50)
    head, found = verify(lines)
    assert head.seq == 50 and found == []


def test_verify_finds_an_edit_a_deletion_and_an_insertion():
    lines = chain(20)
    body_edited = lines[:5] + [edit(lines[5], "b", "text", "something else")] + lines[6:]
    assert any("body was edited" in p for p in problems(body_edited))
    header_edited = lines[:5] + [edit(lines[5], "h", "user", "bob")] + lines[6:]
    assert any("header was edited" in p for p in problems(header_edited))
    assert any("removed or inserted" in p for p in problems(lines[:7] + lines[8:]))
    forged = Head(7, orjson.loads(lines[6])["id"])
    inserted = lines[:7] + [seal(forged, {"kind": "turn"}, {"text": "forged"})] + lines[7:]
    assert problems(inserted)
    replaced = lines[:7] + [seal(Head(7, "f" * 64), {"kind": "turn"}, {"text": "forged"})] + lines[8:]
    assert any("not chained" in p for p in problems(replaced))


def test_a_cut_off_end_is_found_against_a_checkpoint():
    lines = chain(30)
    cp = {"seq": 25, "hash": orjson.loads(lines[24])["id"]}
    assert problems(lines, [cp]) == []
    assert any("cut off" in p for p in problems(lines[:20], [cp]))


def test_an_erased_body_keeps_the_chain_verifiable():
    lines = chain(10)
    rec = orjson.loads(lines[4])
    rec["b"] = ERASED
    assert problems(lines[:4] + [orjson.dumps(rec) + b"\n"] + lines[5:]) == []


@pytest.mark.parametrize(
    ("kind", "text", "secret"),
    [
        ("email", "write to ann.lee+game@example.co.uk please", "ann.lee"),
        ("phone", "call me on +44 20 7946 0958 tonight", "7946"),
        ("phone", "or (555) 123-4567", "123-4567"),
        ("card", "my card is 4111 1111 1111 1111 ok", "4111"),
        ("account", "IBAN DE89 3704 0044 0532 0130 00 thanks", "3704"),
        ("key", "the key rtk_0a1b2c3d4e5f_SECRETsecretSECRET works", "SECRET"),
        ("key", "and sk-abcdefghijklmnopqrstuvwxyz too", "abcdefghijklmnop"),
    ],
)
def test_each_pii_kind_is_redacted(kind: str, text: str, secret: str):
    out = redact.apply("redacted", text)
    assert out is not None and f"<{kind}>" in out and secret not in out, out
    assert out.split()[0] == text.split()[0]  # the words around it stay


def test_the_policies():
    assert redact.apply("full", "x@y.io") == "x@y.io"
    assert redact.apply("hash", "x@y.io").startswith("sha256:")
    assert redact.apply("none", "x@y.io") is None
    assert redact.apply("redacted", "I have 3 swords and 12 coins") == "I have 3 swords and 12 coins"


async def test_the_writer_writes_every_record_and_the_chain_goes_on_after_a_restart(tmp_path: Path):
    log = AuditLog(tmp_path, "n1", checkpoint_every=100, rotate_bytes=20_000)
    await log.start()
    for i in range(1000):
        log.append("turn", {"sid": "s"}, {"i": i})
    await log.close()
    again = AuditLog(tmp_path, "n1", checkpoint_every=100, rotate_bytes=20_000)
    await again.start()
    again.append("turn", {"sid": "s"}, {"i": 1000})
    await again.close()
    paths = files(tmp_path, "n1")
    assert len(paths) > 1  # rotated
    lines = [x for p in paths for x in p.read_bytes().splitlines()]
    cps = [orjson.loads(x) for x in (tmp_path / "n1.checkpoints").read_bytes().splitlines()]
    head, found = verify(lines, cps)
    assert (head.seq, found, len(lines)) == (1001, [], 1001)
    assert [orjson.loads(x)["b"]["i"] for x in lines] == list(range(1001))


async def test_a_slow_disk_fills_the_buffer_then_it_drains_and_nothing_is_lost(tmp_path: Path):
    log = AuditLog(tmp_path, "n1", capacity=10, batch=4)
    gate = threading.Event()
    log.slow_disk = lambda: gate.wait(30)  # the disk takes as long as the test says
    await log.start()
    for i in range(25):
        log.append("turn", {}, {"i": i})
    assert log.full  # new turns would get busy now
    gate.set()
    await log.close()
    assert not log.full and log.written == 25
