"""The Redis tier's failure policy with a fake client and an injected clock: a failed call turns the tier off for
a while (turns do not each pay the timeout), then it is tried again; what a claim answers for each script reply."""

from __future__ import annotations

from rtserver.cache import Reply, SharedCache
from rtserver.cache.shared import RETRY_S


class FakeRedis:
    def __init__(self) -> None:
        self.calls = 0
        self.fail = True
        self.answer: list[object] = [2, b""]

    def register_script(self, source: str):
        async def run(keys, args):
            self.calls += 1
            assert all(k.startswith("rt:cache:{k1}") for k in keys)  # one hash tag: one cluster slot
            if self.fail:
                raise ConnectionError("refused")
            return self.answer

        return run


def tier(fake: FakeRedis, now: list[float]) -> SharedCache:
    return SharedCache(fake, fake, timeout=0.1, ttl=60, wait=1, clock=lambda: now[0])


async def test_a_failure_turns_redis_off_for_a_while_then_it_is_tried_again():
    fake, now = FakeRedis(), [100.0]
    shared = tier(fake, now)
    assert (await shared.claim("k1")).kind == "off" and shared.degraded and fake.calls == 1
    assert (await shared.claim("k1")).kind == "off" and fake.calls == 1  # not even tried
    now[0] += RETRY_S
    fake.fail = False
    assert (await shared.claim("k1")).kind == "lead" and not shared.degraded and fake.calls == 2


async def test_a_claim_reads_the_script_answer():
    fake, now = FakeRedis(), [0.0]
    fake.fail = False
    shared = tier(fake, now)
    reply = Reply(("a", "b"), "stop")
    fake.answer = [1, reply.encode()]
    assert (await shared.claim("k1")).reply == reply
    fake.answer = [1, b"garbage"]
    assert (await shared.claim("k1")).kind == "lead"  # an entry it cannot read is generated again
    fake.answer = [3, b"1700000000000-0"]
    claim = await shared.claim("k1")
    assert (claim.kind, claim.after) == ("wait", "1700000000000-0")


class FakeStream:
    """XREAD answers from a script: each call pops the next one (None: the block ran out)."""

    def __init__(self, answers: list[object]) -> None:
        self.answers, self.reads = answers, []

    async def xread(self, streams, count, block):
        self.reads.append(dict(streams))
        return self.answers.pop(0)


async def test_a_waiter_keeps_waiting_through_beats_and_takes_the_reply():
    reply = Reply(("a",), "stop")
    done = b"rt:cache:{k1}:done"
    stream = FakeStream([[[done, [(b"1-0", {b"p": b""})]]], [[done, [(b"2-0", {b"r": reply.encode()})]]]])
    fake = FakeRedis()
    shared = SharedCache(fake, stream, timeout=0.1, ttl=60, wait=1, clock=lambda: 0.0)
    got = await shared.wait("k1", await_claim_after("0-0"))
    assert got == reply
    assert [r["rt:cache:{k1}:done"] for r in stream.reads] == ["0-0", b"1-0"]  # each read after the last seen


async def test_a_waiter_gives_up_without_beats_or_on_a_failed_leader():
    fake = FakeRedis()
    silent = SharedCache(fake, FakeStream([None]), timeout=0.1, ttl=60, wait=1, clock=lambda: 0.0)
    assert await silent.wait("k1", await_claim_after("0-0")) is None
    failed = [[b"rt:cache:{k1}:done", [(b"3-0", {b"r": b""})]]]
    shared = SharedCache(fake, FakeStream([failed]), timeout=0.1, ttl=60, wait=1, clock=lambda: 0.0)
    assert await shared.wait("k1", await_claim_after("0-0")) is None


def await_claim_after(after: str):
    from rtserver.cache import Claim

    return Claim("wait", after=after)
