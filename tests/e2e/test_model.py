"""The main path on the real engine: llama.cpp on the bundled model, through `rtserver serve` and the client."""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from rtclient import Client

from training.evaluate import heldout_prompts, heldout_text

from ..conftest import ROOT
from ..helpers import http_get

pytestmark = pytest.mark.model
PERSONA = "You are Mira, a cheerful herbalist in the village of Ashvale."


@pytest.fixture
def model_server(start_server, bundled_model):
    return start_server("--slots", "4")


async def engine_counter(srv, name: str) -> float:
    body = (await http_get(f"{srv.http}/metrics")).decode()
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(f"rtserver_engine_{name}"))


async def test_multi_turn_conversation_reuses_kv(model_server):
    async with Client(model_server.url) as c:
        s = await c.open_session(persona=PERSONA, params={"seed": 11, "temperature": 0.7})
        results = []
        lines = (
            "Hello!",
            "What is your name?",
            "Any news?",
            "Tell me a story.",
            "What do you sell?",
            "Do you have any work for me?",
            "I'll do it.",
            "Tell me about this place.",
            "How are you?",
            "Goodbye.",
        )
        for line in lines:  # ten turns with a persona fit the context
            turn = await s.say(line)
            pieces = [p async for p in turn]
            r = await turn.result()
            assert r.reason == "stop" and r.text == "".join(pieces) and r.text.strip()
            assert "<|" not in r.text
            results.append(r)
        assert "Mira" in results[1].text
        # Every turn after the first prefills only its new tokens: the history's KV is kept.
        for r in results[1:]:
            assert r.usage["reused"] > 0.7 * r.usage["prompt"]
        prefilled = await engine_counter(model_server, "prefilled_tokens")
        prompt_total = sum(r.usage["prompt"] for r in results)
        assert prefilled == prompt_total - sum(r.usage["reused"] for r in results)
        assert prefilled < prompt_total / 2


async def test_same_seed_same_reply_across_sessions(model_server):
    async with Client(model_server.url) as c:
        texts = []
        for _ in range(2):
            s = await c.open_session(persona=PERSONA, params={"seed": 5, "temperature": 0.9})
            texts.append((await (await s.say("Tell me a story.")).result()).text)
        other = await c.open_session(persona=PERSONA, params={"seed": 6, "temperature": 0.9})
        texts.append((await (await other.say("Tell me a story.")).result()).text)
    assert texts[0] == texts[1]
    assert texts[2] != texts[0]


async def test_cancel_stops_the_real_engine_within_a_step(bundled_model):
    from rtserver.engine.base import Finish, Message, Request, Token
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=2))
    await engine.start()
    try:
        req = Request(
            "s", [Message("system", PERSONA), Message("user", "Tell me a story.")], temperature=0, max_tokens=200
        )
        seen, finish = 0, None
        async for ev in engine.generate(req):
            if isinstance(ev, Token):
                seen += 1
                req.cancel.set()
            elif isinstance(ev, Finish):
                finish = ev
        assert finish is not None and finish.reason == "cancelled"
        assert finish.completion_tokens <= seen + 2
        assert engine.stats()["generated_tokens"] == finish.completion_tokens
        # The KV keeps only what was delivered; the next turn reuses it rather than the discarded tail.
        slot = engine.kv.slots["s"]
        assert len(slot.tokens) <= finish.prompt_tokens + seen
    finally:
        await engine.close()


async def test_replies_to_heldout_prompts_are_well_formed(bundled_model):
    from training.evaluate import replies

    prompts = heldout_prompts(40)
    rate, _, bad = await replies(bundled_model, prompts)
    assert rate >= 0.95, bad


def test_gguf_tokenizer_matches_the_training_tokenizer(bundled_model):
    from training.evaluate import tokenizer_agreement

    text = heldout_text(30) + " Unseen words: Zanzibar, naïve café, 12345, emojis 🐉!"
    assert tokenizer_agreement(bundled_model, ROOT / "training" / "tokenizer.json", text)


async def test_concurrent_sessions_are_independent(model_server):
    """Four sessions at once (queued fairly on one engine) give what each gives alone."""
    async with Client(model_server.url) as c:
        lines = ["Hello!", "Any jobs?", "Tell me a story.", "What do you sell?"]
        alone = []
        for line in lines:
            s = await c.open_session(persona=PERSONA, params={"seed": 2})
            alone.append((await (await s.say(line)).result()).text)
        # cache off: these are the lines just said alone, which the reply cache would answer without the engine
        sessions = [await c.open_session(persona=PERSONA, params={"seed": 2, "cache": False}) for _ in lines]
        turns = await asyncio.gather(*(s.say(line) for s, line in zip(sessions, lines, strict=True)))
        together = [(await t.result()) for t in turns]
    assert [r.text for r in together] == alone
    assert max(r.timings["queue_ms"] for r in together) > 0


async def test_cancelling_a_queued_turn_ends_it_without_running_it(bundled_model):
    from rtserver.engine.base import Finish, Message, Request
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1))
    await engine.start()
    try:
        msgs = [Message("system", PERSONA), Message("user", "Tell me a story.")]
        a = Request("a", msgs, temperature=0, max_tokens=200)
        b = Request("b", msgs, temperature=0, max_tokens=200)
        gen_a = engine.generate(a)  # submitted first: takes the only sequence
        gen_b = engine.generate(b)  # waits behind it
        b.cancel.set()  # b is cancelled while a runs (a's reply takes many steps): it must never reach the decoder
        finish_b = await anext(gen_b)
        assert isinstance(finish_b, Finish) and finish_b.reason == "cancelled"
        events_a = [e async for e in gen_a]
        assert isinstance(events_a[-1], Finish) and events_a[-1].reason == "stop"
        assert engine.stats()["turns"] == 1  # b never reached the decoder
        assert engine.stats()["generated_tokens"] == events_a[-1].completion_tokens
    finally:
        await engine.close()


async def test_waiting_turns_start_highest_priority_first(bundled_model):
    """One sequence, held by a turn that cannot end; a priority-5 turn submitted after a priority-0 one gets the
    sequence first when it frees."""
    from rtserver.engine.base import Message, Request, Token
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1))
    await engine.start()
    try:
        msgs = [Message("system", PERSONA), Message("user", "Tell me a story.")]
        # A grammar with no end: the reply never stops by itself, so the only sequence stays taken until cancelled.
        hold = Request("hold", msgs, temperature=0, max_tokens=100_000, grammar='root ::= "a" root')
        gen_hold = engine.generate(hold)
        assert isinstance(await anext(gen_hold), Token)
        started: list[str] = []

        async def first_token(key: str, events) -> None:
            async for ev in events:
                if isinstance(ev, Token) and key not in started:
                    started.append(key)

        # generate() submits at once: both wait behind the held sequence, low first.
        low = engine.generate(Request("low", msgs, temperature=0, max_tokens=8, priority=0))
        high = engine.generate(Request("high", msgs, temperature=0, max_tokens=8, priority=5))
        hold.cancel.set()
        [e async for e in gen_hold]
        await asyncio.gather(first_token("low", low), first_token("high", high))
        assert started == ["high", "low"]
    finally:
        await engine.close()


async def collect(events, key: str, log: list[tuple[str, str]]):
    """A turn's text and Finish; each event's arrival goes into ``log`` as (key, "token" or "finish")."""
    from rtserver.engine.base import Finish, Token

    text, finish = "", None
    async for ev in events:
        if isinstance(ev, Token):
            text += ev.text
            log.append((key, "token"))
        elif isinstance(ev, Finish):
            finish = ev
            log.append((key, "finish"))
    return text, finish


@pytest.mark.parametrize(
    ("time_slice", "host_mb", "sliced"),
    [(4, 64, True), (0, 64, False), (4, 0, False)],
    ids=["time-sliced", "time-slice-off", "no-host-memory-to-park-in"],
)
async def test_a_waiting_turn_takes_a_running_turns_place_after_its_slice(bundled_model, time_slice, host_mb, sliced):
    """One sequence, two turns: the second starts once the first has generated ``time_slice`` tokens, not when it
    ends; the first, parked in host memory meanwhile, resumes where it was. Both replies are those each turn gets
    alone. Off, or with no host memory to park KV in, the second waits for the first to end."""
    from rtserver.engine.base import Message, Request
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    def request(key: str, line: str) -> Request:
        return Request(key, [Message("system", PERSONA), Message("user", line)], temperature=0, max_tokens=40)

    reference = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1, time_slice=0, host_budget_mb=host_mb))
    await reference.start()
    try:
        alone = [await collect(reference.generate(request(k, line)), k, []) for k, line in LINES_AB]
        prefilled = reference.stats()["prefilled_tokens"]
    finally:
        await reference.close()

    engine = LlamaEngine(
        bundled_model, EngineConfig(n_ctx=1024, slots=1, time_slice=time_slice, host_budget_mb=host_mb)
    )
    await engine.start()
    try:
        log: list[tuple[str, str]] = []
        first = engine.generate(request(*LINES_AB[0]))
        head = await anext(first)  # a is generating before b is submitted
        log.append(("a", "token"))
        got = await asyncio.gather(collect(first, "a", log), collect(engine.generate(request(*LINES_AB[1])), "b", log))
        stats = engine.stats()
    finally:
        await engine.close()
    got[0] = (head.text + got[0][0], got[0][1])
    assert [t for t, _ in got] == [t for t, _ in alone]
    assert [f.completion_tokens for _, f in got] == [f.completion_tokens for _, f in alone]
    assert alone[0][1].completion_tokens > time_slice + 4  # a's reply is long enough to be cut into slices
    b_started, a_ended = log.index(("b", "token")), log.index(("a", "finish"))
    assert (b_started < a_ended) is sliced
    assert (stats["preemptions"] > 0) is sliced
    assert stats["parked_turns"] == 0 and not engine.kv.parked
    assert stats["prefilled_tokens"] == prefilled  # a parked turn's KV came back as it was, never recomputed


LINES_AB = [("a", "Tell me a story."), ("b", "What do you sell?")]


@pytest.mark.parametrize("prefill_first", [True, False], ids=["prompt-alone", "prompt-beside-next-tokens"])
async def test_a_new_turns_prompt_is_decoded_before_the_others_next_tokens(bundled_model, prefill_first):
    """b's line comes while a generates: with prefill_first b's prompt is decoded in a step of its own and a's next
    token in the step after; otherwise the two share a step. The replies are the same either way, and the same
    as each turn's alone."""
    from rtserver.engine.base import Message, Request
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    def request(key: str, line: str) -> Request:
        return Request(key, [Message("system", PERSONA), Message("user", line)], temperature=0, max_tokens=40)

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=2, prefill_first=prefill_first))
    await engine.start()
    try:
        alone = [await collect(engine.generate(request(k, line)), k, []) for k, line in LINES_AB]
        before = engine.stats()
        first = engine.generate(request("a2", LINES_AB[0][1]))
        head = await anext(first)  # a is generating before b is submitted
        got = await asyncio.gather(
            collect(first, "a", []), collect(engine.generate(request("b2", LINES_AB[1][1])), "b", [])
        )
        stats = engine.stats()
    finally:
        await engine.close()
    got[0] = (head.text + got[0][0], got[0][1])
    assert [t for t, _ in got] == [t for t, _ in alone]
    assert alone[0][1].completion_tokens > 8  # a's reply runs on while b's prompt is decoded
    assert before["prefill_first_steps"] == 0  # one turn at a time: nothing to put first
    assert (stats["prefill_first_steps"] == 1) is prefill_first


async def test_a_parked_turn_that_is_cancelled_ends_at_once(bundled_model):
    """A turn parked for a higher-priority one (which it may not take the sequence back from) is cancelled: it
    ends while the other still runs, and its session's next turn still reuses the KV parked for it."""
    from rtserver.engine.base import Message, Request
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1, time_slice=2))
    await engine.start()
    try:
        msgs = [Message("system", PERSONA), Message("user", "Tell me a story.")]
        a = Request("a", msgs, temperature=0, max_tokens=200)
        events_a = engine.generate(a)
        said = "".join([(await anext(events_a)).text for _ in range(3)])  # past its slice
        # b outranks a and never ends by itself (a grammar with no end), so a stays parked until cancelled.
        b = Request("b", msgs, temperature=0, max_tokens=100_000, priority=5, grammar='root ::= "a" root')
        events_b = engine.generate(b)
        await anext(events_b)  # b runs: a is parked
        assert engine.stats()["parked_turns"] == 1
        a.cancel.set()
        rest, finish_a = await collect(events_a, "a", [])
        assert finish_a.reason == "cancelled" and finish_a.completion_tokens >= 3
        assert not engine.kv.parked and "a" in engine.kv.host  # its KV stays saved, as an idle session's
        b.cancel.set()
        await collect(events_b, "b", [])
        assert engine.stats()["preemptions"] == 1
        history = {"a": [*msgs, Message("assistant", said + rest)]}  # what reached the client
        _, again = await run_turn(engine, history, "a", "Go on.")
    finally:
        await engine.close()
    assert again.reused_tokens >= finish_a.prompt_tokens  # the parked KV came back, not a prefill of it all


async def test_sixteen_sessions_batched_match_each_alone(start_server, bundled_model):
    """16 multi-turn conversations decoded together in one batch give the same text as each one alone."""
    srv = start_server("--slots", "16")
    lines = ["Hello!", "What do you sell?", "Tell me a story."]

    async def converse(c: Client, seed: int) -> list[str]:
        # cache off: the second time the same seeded lines would be answered by the reply cache, not decoded
        s = await c.open_session(persona=PERSONA, params={"seed": seed, "temperature": 0.8, "cache": False})
        return [(await (await s.say(line)).result()).text for line in lines]

    async with Client(srv.url) as c:
        alone = [await converse(c, seed) for seed in range(16)]
        together = await asyncio.gather(*(converse(c, seed) for seed in range(16)))
    assert together == alone
    assert len({tuple(t) for t in alone}) > 1  # different seeds, different conversations
    assert await engine_counter(srv, "peak_batch_sequences") > 8  # they really were decoded together


async def run_turns(engine, plan, history=None):
    """Run (session, line) turns in order through an engine, greedy; return each reply and its Finish."""
    history = {} if history is None else history
    return [await run_turn(engine, history, key, line) for key, line in plan]


async def run_turn(engine, history, key, line):
    from rtserver.engine.base import Finish, Message, Request, Token

    msgs = history.setdefault(key, [Message("system", PERSONA)])
    msgs.append(Message("user", line))
    text, finish = "", None
    async for ev in engine.generate(Request(key, list(msgs), temperature=0, max_tokens=80)):
        if isinstance(ev, Token):
            text += ev.text
        elif isinstance(ev, Finish):
            finish = ev
    msgs.append(Message("assistant", text))
    return text, finish


async def test_generating_sequences_are_moved_onto_consecutive_ids(bundled_model):
    """llama.cpp decodes a split KV's batch in one pass only over consecutive sequence ids: two sessions whose KV
    sits on ids 3 and 0 are moved next to each other before they decode together, and every session (the moved
    ones, and the idle one whose KV was swapped out of the way) continues exactly as if nothing had moved."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    warm = [(k, "Hello!") for k in "abcd"]  # four sessions on four sequences: a on id 3 ... d on id 0
    later = [("a", "What do you sell?"), ("d", "Any news?"), ("c", "Tell me a story.")]
    reference = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=4, host_budget_mb=0))
    await reference.start()
    try:
        expected = await run_turns(reference, warm + later)
    finally:
        await reference.close()

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=4, host_budget_mb=0))
    await engine.start()
    try:
        history: dict[str, list] = {}
        got = await run_turns(engine, warm, history)
        ids = {key: slot.seq for key, slot in engine.kv.slots.items()}
        assert abs(ids["a"] - ids["d"]) > 1  # not neighbours: decoded together they would take two passes
        before = engine.stats()
        got += await asyncio.gather(*(run_turn(engine, history, k, line) for k, line in later[:2]))
        during = engine.stats()
        got += await run_turns(engine, later[2:], history)
    finally:
        await engine.close()
    assert during["peak_batch_sequences"] == 2  # a and d were decoded together
    assert during["kv_moves"] > before["kv_moves"]
    assert during["split_steps"] == before["split_steps"] == 0  # every step one run of ids: one pass
    assert [t for t, _ in got] == [t for t, _ in expected]
    # The KV moved with its session: nothing was prefilled again (c's was swapped out of the way while idle).
    assert [f.reused_tokens for _, f in got] == [f.reused_tokens for _, f in expected]


async def test_a_session_coming_back_is_placed_next_to_the_running_ones(bundled_model):
    """A session whose KV is not in the context takes the sequence beside the running ones (evicting the idle
    session there rather than the least recently used one elsewhere), so no KV has to move."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    warm = [(k, "Hello!") for k in "dcba"]  # d on id 3 ... a on id 0; d is the least recently used
    later = [("a", "What do you sell?"), ("e", "Any news?")]
    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=4, host_budget_mb=64))
    await engine.start()
    try:
        history: dict[str, list] = {}
        await run_turns(engine, warm, history)
        assert {k: s.seq for k, s in engine.kv.slots.items()} == {"d": 3, "c": 2, "b": 1, "a": 0}
        await asyncio.gather(*(run_turn(engine, history, k, line) for k, line in later))
        stats = engine.stats()
        placed = {k: s.seq for k, s in engine.kv.slots.items()}
    finally:
        await engine.close()
    assert stats["peak_batch_sequences"] == 2  # a and e ran together
    assert placed["e"] == 1 and "b" not in placed and placed["d"] == 3  # b (beside a) made room, not d
    assert stats["kv_moves"] == 0 and stats["split_steps"] == 0


async def test_a_next_turns_opening_is_decoded_before_its_line_comes(bundled_model):
    """When a reply ends, the chat template's tokens that open the next user message are decoded at once, so the
    next turn prefills only its line and what follows it; the replies are those of an engine that waits."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    plan = [("a", "Hello!"), ("a", "What do you sell?"), ("a", "Any news?")]
    results = {}
    for ahead in (False, True):
        engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=2, decode_ahead=ahead))
        await engine.start()
        try:
            results[ahead] = (await run_turns(engine, plan), engine.stats())
        finally:
            await engine.close()
    (waited, plain), (ready, stats) = results[False], results[True]
    assert [t for t, _ in ready] == [t for t, _ in waited]
    gained = [r.reused_tokens - w.reused_tokens for (_, r), (_, w) in zip(ready, waited, strict=True)]
    # ChatML's "<|im_end|>\n<|im_start|>user\n" after every reply: 5 tokens of the bundled model's vocabulary
    assert gained == [0, 5, 5]
    assert stats["ahead_tokens"] >= 10 and plain["ahead_tokens"] == 0  # (the third reply's may still be going)
    assert [f.prompt_tokens for _, f in ready] == [f.prompt_tokens for _, f in waited]


async def test_evicted_kv_is_restored_not_recomputed(bundled_model):
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    plan = [("a", "Hello!"), ("b", "Any news?"), ("a", "What do you sell?"), ("b", "Tell me a story.")]
    results = {}
    for slots, host_mb in ((2, 0), (1, 64), (1, 0)):  # never evicted / evicted and restored / evicted, dropped
        engine = LlamaEngine(
            bundled_model, EngineConfig(n_ctx=1024, slots=slots, host_budget_mb=host_mb, restore_ahead=False)
        )
        await engine.start()
        try:
            results[(slots, host_mb)] = (await run_turns(engine, plan), engine.stats())
        finally:
            await engine.close()
    kept, restored, rebuilt = results[(2, 0)], results[(1, 64)], results[(1, 0)]
    texts = lambda r: [t for t, _ in r[0]]  # noqa: E731
    assert texts(restored) == texts(kept) == texts(rebuilt)
    assert restored[1]["kv_restored"] == 2 and restored[1]["evictions"] == 3  # a, b, a out; a, b back

    # Returning sessions (turns 3 and 4) prefill only the new line when restored, like sessions never evicted.
    def prefilled(r):
        return [f.prompt_tokens - f.reused_tokens for _, f in r[0][2:]]

    assert prefilled(restored) == prefilled(kept)
    assert all(x > y for x, y in zip(prefilled(rebuilt), prefilled(kept), strict=True))
    assert rebuilt[1]["kv_restored"] == 0


async def test_an_idle_engine_saves_the_kv_it_will_evict_next_ahead_of_time(bundled_model):
    """With every sequence taken and nothing to do, the engine copies the idle sessions' KV to host memory; the
    eviction that makes way for another session's turn keeps that copy instead of saving the KV then, and the
    evicted session's next turn continues exactly as it does without copies."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    plan = [("a", "Hello!"), ("b", "Any news?"), ("a", "What do you sell?"), ("b", "Tell me a story.")]
    results = {}
    for ahead in (False, True):
        engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1, save_ahead=ahead, restore_ahead=False))
        await engine.start()
        try:
            history: dict = {}
            replies = []
            for key, line in plan:
                replies.append(await run_turn(engine, history, key, line))
                assert await asyncio.to_thread(engine.idle.wait, 30)  # the worker is done with this turn
            results[ahead] = (replies, engine.stats())
        finally:
            await engine.close()
    (plain, plain_stats), (ahead, stats) = results[False], results[True]
    assert [t for t, _ in ahead] == [t for t, _ in plain]
    assert [f.reused_tokens for _, f in ahead] == [f.reused_tokens for _, f in plain]
    assert stats["kv_saved_ahead"] == 4 and plain_stats["kv_saved_ahead"] == 0  # after each turn, its session's
    assert stats["kv_saved_ahead_used"] == 3 and stats["kv_saved"] == plain_stats["kv_saved"] == 3
    assert stats["kv_restored"] == plain_stats["kv_restored"] == 2


class PlayerClock:
    """The engine's clock, moved by the test: each line comes at the time the plan says (sessions with a pace)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_idle_engine_puts_back_the_kv_of_the_session_due_next(bundled_model):
    """Two sessions take turns on one sequence, each every 10 s. Once both have a pace, the idle engine brings
    back the one due next in place of the one that just spoke, so that its line finds its KV in the context; the
    replies and the tokens reused are the same as without. A session a whole pace overdue is not brought back."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    clock = PlayerClock()
    plan = [(0, "a", "Hello!"), (5, "b", "Any news?"), (10, "a", "What do you sell?"), (15, "b", "Bye.")]
    plan += [(20, "a", "Tell me a story."), (45, "b", "Hello!"), (60, "a", "Any news?")]
    results = {}
    for ahead in (False, True):
        engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1, restore_ahead=ahead), clock=clock)
        await engine.start()
        try:
            history: dict = {}
            replies, restored_at_turn = [], []
            for at, key, line in plan:
                clock.now = at
                before = engine.stats()
                replies.append(await run_turn(engine, history, key, line))
                assert await asyncio.to_thread(engine.idle.wait, 30)  # the worker is done, idle work included
                after = engine.stats()
                grew = {k: after[k] - before[k] for k in ("kv_restored", "kv_restored_ahead")}
                restored_at_turn.append(grew["kv_restored"] - grew["kv_restored_ahead"])  # (ahead ones count too)
            results[ahead] = (replies, restored_at_turn, engine.stats())
        finally:
            await engine.close()
    (plain, plain_restores, plain_stats), (replies, restores, stats) = results[False], results[True]
    assert [t for t, _ in replies] == [t for t, _ in plain]
    assert [f.reused_tokens for _, f in replies] == [f.reused_tokens for _, f in plain]
    assert plain_restores == [0, 0, 1, 1, 1, 1, 1] and plain_stats["kv_restored_ahead"] == 0
    # After b's line at 15 both have a pace of 10 s: a is due at 20, b at 25, so a comes back; after a's line at
    # 20, b. After b's line at 45, a (due at 30) is a whole pace overdue: its line at 60 waits for its restore.
    # After that line b (pace now 20 s, due at 65) comes back ahead of a (due at 85).
    assert restores == [0, 0, 1, 1, 0, 0, 1]
    assert stats["kv_restored_ahead"] == 3 and plain_stats["kv_restored"] == 5


async def test_an_engine_forgets_the_pace_of_sessions_it_no_longer_holds(bundled_model):
    """What restore ahead keeps per session (when its last turn ended, its pace) is bounded by the sessions whose
    KV the engine holds, however many come and go."""
    from rtserver.engine.base import Message, Request
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=512, slots=1, host_budget_mb=0))
    await engine.start()
    try:
        for i in range(100):
            request = Request(f"s{i}", [Message("user", "Hello!")], temperature=0, max_tokens=2)
            assert [e async for e in engine.generate(request)]
        assert len(engine.notes.ended_at) <= 4 * 1 + 64 + 1 and len(engine.notes.pace) <= 4 * 1 + 64 + 1
    finally:
        await engine.close()


async def test_host_kv_stays_within_its_budget(bundled_model):
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1, host_budget_mb=1, restore_ahead=False))
    await engine.start()
    try:
        await run_turns(engine, [("a", "Hello!")])
        one_session = state_size(engine)
        engine.kv.budget = int(one_session * 2.5)  # room for two evicted sessions, not three
        await run_turns(engine, [(k, "Hello!") for k in "bcd"])  # evicts a, b, c
        stats = engine.stats()
        assert stats["kv_saved"] == 3 and stats["kv_dropped"] == 1
        assert engine.kv.host_bytes + engine.kv.copies_bytes <= engine.kv.budget
        assert list(engine.kv.host) == ["b", "c"]  # the oldest went first
    finally:
        await engine.close()


def state_size(engine) -> int:
    import llama_cpp

    slot = next(iter(engine.kv.slots.values()))
    return int(llama_cpp.llama_state_seq_get_size(engine.context.ptr, slot.seq))


NPC_SCHEMA = {
    "type": "object",
    "properties": {
        "line": {"type": "string", "maxLength": 80},
        "emotion": {"type": "string", "enum": ["happy", "angry", "sad", "neutral"]},
        "choices": {"type": "array", "items": {"type": "string", "maxLength": 30}, "maxItems": 3},
    },
    "required": ["line", "emotion", "choices"],
}


async def test_schema_constrained_replies_always_parse(model_server):
    """At temperature 1 the bundled model puts raw control characters (a newline, \\x12) inside a string in 2 of
    these 40 replies when the grammar admits them, as llama-cpp-python's schema converter's does."""
    import json

    async with Client(model_server.url) as c:
        for seed in range(40):
            s = await c.open_session(persona=PERSONA, params={"seed": seed, "temperature": 1.0, "max_tokens": 200})
            turn = await s.say("Any news?", schema=NPC_SCHEMA)
            pieces = [p async for p in turn]  # streamed as generated, like any reply
            r = await turn.result()
            assert r.reason == "stop" and r.parsed is True and len(pieces) > 3
            reply = json.loads(r.text)
            assert set(reply) == {"line", "emotion", "choices"}
            assert reply["emotion"] in NPC_SCHEMA["properties"]["emotion"]["enum"]
            assert isinstance(reply["choices"], list) and len(reply["choices"]) <= 3
            # Without the schema the same model answers in plain prose.
            plain = await (await s.say("Any news?")).result()
            assert plain.parsed is None and not plain.text.lstrip().startswith("{")


def test_a_grammar_rules_out_control_tokens_it_would_read_as_text(bundled_model):
    """llama.cpp's grammar reads ``<|im_start|>`` as its spelling, which any JSON string admits, while the reply
    sent leaves a control token out: under a grammar the sampler never picks one, however likely the model makes
    it. The end of the reply stays possible."""
    import ctypes

    import llama_cpp as C

    from rtserver.engine.base import Message, Request
    from rtserver.engine.model import Model
    from rtserver.engine.step import sampler

    model = Model(bundled_model)
    try:
        start, end = model.tokenize("<|im_start|>")[0], model.tokenize("<|im_end|>")[0]
        some_text = model.tokenize(" hello")[0]

        def pick(grammar: str | None, favourite: int) -> int:
            request = Request("k", [Message("user", "hi")], temperature=0, grammar=grammar)
            chain = sampler(model, request)
            data = (C.llama_token_data * model.n_vocab)(*((t, 0.0, 0.0) for t in range(model.n_vocab)))
            data[favourite].logit, data[some_text].logit = 50.0, 10.0
            cur = C.llama_token_data_array(data, model.n_vocab, -1, False)
            try:
                C.llama_sampler_apply(chain, ctypes.byref(cur))
                return int(data[cur.selected].id)
            finally:
                C.llama_sampler_free(chain)

        anything = r"root ::= [^\x00]*"
        assert pick(None, start) == start  # unconstrained: the model's choice
        assert pick(anything, start) == some_text
        assert pick(anything, end) == end
    finally:
        model.close()


@pytest.mark.parametrize(
    "pattern, text",
    [
        ("^a.b$", '{"code": "a'),
        ("^[^,]{1,8}$", '{"code": "'),
        ("^[ -~]{1,8}$", '{"code": "'),
        ('^["a-z]{1,8}$', '{"code": "'),
        (r"^[\\\tx]+$", '{"code": "'),
    ],
)
def test_a_schema_pattern_never_lets_a_string_end_early_or_hold_a_control_character(bundled_model, pattern, text):
    """llama-cpp-python's converter turns a pattern's ``.`` into ``[^\\x0A\\x0D]`` and ``[^,]`` into ``[^,]``, and
    copies a positive class such as ``[ -~]`` as it is: a quote there would end the JSON string early, and a tab or a
    lone backslash would break it, so the reply would not parse however well the rest went. Where the model most
    wants one of them, the grammar picks ordinary text instead."""
    import ctypes

    import llama_cpp as C

    from rtserver.engine.base import Message, Request
    from rtserver.engine.grammar import schema_to_grammar
    from rtserver.engine.model import Model
    from rtserver.engine.step import sampler

    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}, "required": ["code"]}
    model = Model(bundled_model)
    try:
        ordinary = model.tokenize("x")[0]

        def pick(favourite: int) -> int:
            request = Request("k", [Message("user", "hi")], temperature=0, grammar=schema_to_grammar(schema))
            chain = sampler(model, request)
            try:
                for tok in model.tokenize(text):  # the reply so far: the grammar follows it
                    C.llama_sampler_accept(chain, tok)
                data = (C.llama_token_data * model.n_vocab)(*((t, 0.0, 0.0) for t in range(model.n_vocab)))
                data[favourite].logit, data[ordinary].logit = 50.0, 10.0
                cur = C.llama_token_data_array(data, model.n_vocab, -1, False)
                C.llama_sampler_apply(chain, ctypes.byref(cur))
                return int(data[cur.selected].id)
            finally:
                C.llama_sampler_free(chain)

        for bad in ('"', "\t", "\\"):
            [token] = model.tokenize(bad)
            assert pick(token) == ordinary, bad
    finally:
        model.close()


async def test_regenerating_a_structured_reply_keeps_its_schema(model_server):
    import json

    async with Client(model_server.url) as c:
        s = await c.open_session(persona=PERSONA, params={"seed": 1, "temperature": 1.0, "max_tokens": 200})
        first = await (await s.say("Any news?", schema=NPC_SCHEMA)).result()
        others = [await (await s.regenerate(params={"seed": seed})).result() for seed in (2, 3)]
    for r in [first, *others]:
        assert r.reason == "stop" and r.parsed is True
        assert set(json.loads(r.text)) == {"line", "emotion", "choices"}
    assert len({r.text for r in [first, *others]}) > 1  # alternatives, not the same reply again


@pytest.mark.parametrize("pattern", [r"^\d{3}-\w{2}\s\S$", r'^[a-z]{2} "[a-z]{2}"$', r"^[a-z]\\[a-z]$"])
async def test_a_schema_pattern_holds_the_string_the_reply_decodes_to(model_server, pattern):
    """llama-cpp-python's converter makes a grammar of the JSON text between the string's quotes as if the pattern
    matched that text: it copied ``\\d``, ``\\w`` and ``\\s`` as they are (a grammar llama.cpp refuses), a literal
    quote (which ends the string early) and a literal backslash (which begins an escape). The reply parses, and
    the string it decodes to matches the pattern."""
    import re

    schema = {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}, "required": ["code"]}
    async with Client(model_server.url) as c:
        s = await c.open_session(persona=PERSONA, params={"temperature": 1.0, "max_tokens": 60})
        for seed in range(4):
            r = await (await s.say("Your code?", schema=schema, params={"seed": seed})).result()
            assert r.reason == "stop" and r.parsed is True, r.text
            assert re.fullmatch(pattern, json.loads(r.text)["code"]), r.text


async def test_a_schema_that_cannot_be_a_grammar_is_refused(model_server):
    from rtclient import RtClientError

    async with Client(model_server.url) as c:
        s = await c.open_session()
        with pytest.raises(RtClientError) as info:
            await s.say("hi", schema={"type": "nonsense"})
        assert info.value.code == "bad_field" and "schema" in info.value.message
        # Grammars llama.cpp would refuse (a negated shorthand inside a class has no GBNF spelling; a repetition
        # past its cap), one too large to parse on the event loop, and a pattern whose only character a JSON string
        # cannot hold as it is: refused at once, not ended as an error mid-turn.
        for bad in ({"pattern": r"^[\D]$"}, {"maxLength": 2000}, {"maxLength": 100_000}, {"pattern": '^["]$'}):
            with pytest.raises(RtClientError) as info:
                await s.say("hi", schema={"type": "string", **bad})
            assert info.value.code == "bad_field" and "schema" in info.value.message, bad
        assert (await (await s.say("Hello!")).result()).reason == "stop"  # the session is intact


async def test_a_refused_grammar_stays_out_of_the_servers_log(model_server):
    """llama.cpp's parser prints a grammar it refuses, whole, to stderr: the server's JSON log, where a client's
    grammar (up to a frame; a schema's, tens of KB) does not belong, and a pipe that nobody drains blocked the
    server there."""
    from rtclient import RtClientError

    marker = "nobody-should-log-this"
    async with Client(model_server.url) as c:
        s = await c.open_session(persona=PERSONA, params={"max_tokens": 8})
        with pytest.raises(RtClientError) as info:
            await s.say("hi", grammar=f'root ::= "{marker}" (((')
        assert info.value.code == "bad_field"
        result = await (await s.say("Hello!")).result()
    await asyncio.to_thread(model_server.wait_event, "turn", tid=result.tid)  # the log up to the turn after it
    assert not [e for e in model_server.log if marker in json.dumps(e)]


async def test_a_grammar_constrains_the_reply(model_server):
    from rtclient import RtClientError

    grammar = 'root ::= ("Yes" | "No") ", " word (" " word)? (" " word)? "."\nword ::= [a-z]{1,12}'
    pattern = re.compile(r"(Yes|No), [a-z]{1,12}( [a-z]{1,12}){0,2}\.")
    async with Client(model_server.url) as c:
        s = await c.open_session(persona=PERSONA, params={"temperature": 1.0, "max_tokens": 60})
        for seed in range(6):
            r = await (await s.say("Will you help me?", grammar=grammar, params={"seed": seed})).result()
            assert r.reason == "stop" and pattern.fullmatch(r.text), r.text
        plain = await (await s.say("Will you help me?", params={"seed": 0})).result()
        assert not pattern.fullmatch(plain.text)  # the model does not answer like that by itself
        for bad in ('root ::= "unterminated', 'start ::= "x"'):
            with pytest.raises(RtClientError) as info:
                await s.say("hi", grammar=bad)
            assert info.value.code == "bad_field" and "grammar" in info.value.message
        with pytest.raises(RtClientError) as info:
            await s.say("hi", grammar=grammar, schema=NPC_SCHEMA)
        assert info.value.code == "bad_field" and "not both" in info.value.message
        assert (await (await s.say("Hello!")).result()).reason == "stop"  # the session is intact


STORY = [
    "Hello!",
    "What do you sell?",
    "Any news?",
    "Tell me a story.",
    "Do you have any work for me?",
    "I'll do it.",
    "How are you?",
    "Tell me about this place.",
]


@pytest.mark.parametrize("keys", ["f16", "q8_0"])
async def test_context_shift_lets_a_story_run_past_ten_contexts(bundled_model, keys):
    """With q8_0 keys on the bundled model's 32-dimension heads llama.cpp cannot shift the context (it would
    crash): the story still goes on, cut to half the context whenever it fills up and prefilled again then."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=256, slots=1, cache_types=(keys, "f16")))
    await engine.start()
    try:
        results = await run_turns(engine, [("s", STORY[i % len(STORY)]) for i in range(80)])
        stats = engine.stats()
    finally:
        await engine.close()
    total = sum(f.prompt_tokens + f.completion_tokens for _, f in results)
    assert total > 10 * 256  # the conversation is ten contexts long
    assert all(text.strip() and f.reason == "stop" for text, f in results)  # and it keeps going, cleanly
    if keys == "q8_0":
        assert stats["context_shifts"] == 0
        # Cut to half the context at once and kept while it fits: a full prefill every few turns, not every turn
        # (cutting one turn at a time, as with a shift, prefilled 87 % of the prompts' tokens here; this 21 %).
        assert stats["prefilled_tokens"] < sum(f.prompt_tokens for _, f in results) / 3
        return
    assert stats["context_shifts"] > 40
    # Each turn prefills about its new line, not the whole window again.
    assert stats["prefilled_tokens"] < sum(f.prompt_tokens for _, f in results) / 4


@pytest.mark.parametrize("keys", ["f16", "q8_0"])
async def test_a_long_storys_prompt_costs_what_the_context_holds_not_the_story(bundled_model, keys):
    """Far into a story, a turn's prompt is found by trying cuts near the last one, each try tokenizing only the
    turns it keeps: the text tokenized for a turn stays a few contexts' worth however long the story grows
    (leaving out one more of the oldest turns at a time, each try tokenized all the rest: at turn 150 of this
    story, hundreds of thousands of tokens a turn). The story's turns still end cleanly."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=256, slots=1, cache_types=(keys, "f16")))
    await engine.start()
    tokenized: list[int] = []
    results = []
    try:
        assert engine.model is not None
        tokenize = engine.model.tokenize_bytes

        def counted(data: bytes) -> list[int]:
            tokens = tokenize(data)
            tokenized[-1] += len(tokens)
            return tokens

        engine.model.tokenize_bytes = counted  # type: ignore[method-assign]
        history: dict = {}
        for i in range(150):
            tokenized.append(0)
            results.append(await run_turn(engine, history, "s", STORY[i % len(STORY)]))
        engine.model.tokenize_bytes = tokenize  # type: ignore[method-assign]
        story = len(engine.model.tokenize(engine.model.template.render(history["s"])))
    finally:
        await engine.close()
    assert story > 15 * 256  # fifteen contexts long
    assert all(text.strip() and f.reason == "stop" for text, f in results)
    assert max(tokenized[100:]) <= 8 * 256, tokenized[100:]


async def test_a_prompt_that_fits_is_rendered_and_tokenized_once(bundled_model):
    """On the way to a returning session's first delta, its prompt is rendered and tokenized once when it fits the
    context: no shorter prompt is tried first (the shortest, persona and newest line, was tried on every turn to
    learn whether anything fits at all). And every token the sequence holds has its text known by then, so that
    matching the prompt against it calls into llama.cpp for none of them."""
    from unittest import mock

    import llama_cpp

    from rtserver.engine.llama import EngineConfig, LlamaEngine

    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1))
    await engine.start()
    renders: list[int] = []
    pieces: list[int] = []
    try:
        assert engine.model is not None
        assert engine.planner is not None
        template, prompt = engine.model.template, engine.planner.prompt
        render, to_piece = template.render, llama_cpp.llama_token_to_piece
        inside = False

        def counted_render(*a, **k):
            renders[-1] += inside
            return render(*a, **k)

        def counted_piece(*a, **k):
            pieces[-1] += inside
            return to_piece(*a, **k)

        def counted_prompt(*a, **k):
            nonlocal inside
            inside = True
            try:
                return prompt(*a, **k)
            finally:
                inside = False

        history: dict = {}
        with (
            mock.patch.object(template, "render", counted_render),
            mock.patch.object(engine.planner, "prompt", counted_prompt),
            mock.patch.object(llama_cpp, "llama_token_to_piece", counted_piece),
        ):
            for line in ["Hello!", "What do you sell?", "Any news?", "Tell me a story.", "Goodbye."]:
                renders.append(0)
                pieces.append(0)
                text, finish = await run_turn(engine, history, "s", line)
                assert finish.reason == "stop" and text.strip()
    finally:
        await engine.close()
    assert renders == [1] * 5
    assert pieces[1:] == [0] * 4


@pytest.mark.parametrize("slots", [4, 1], ids=["from-a-sequence", "from-host-memory"])
async def test_a_shared_persona_is_prefilled_once_and_copied(bundled_model, slots):
    """With 4 sequences, b and c copy the persona's KV from a's sequence; with 1, a (then b) has been evicted to
    host memory when the next session starts, and the copy comes from there."""
    import os

    from rtserver.engine.base import Message
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    plan = [("a", "Hello!"), ("b", "Any news?"), ("c", "Tell me a story.")]
    shared = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=slots))
    await shared.start()
    try:
        together = await run_turns(shared, plan)
        stats = shared.stats()
        prompts = [
            shared.model.tokenize(shared.model.template.render([Message("system", PERSONA), Message("user", line)]))
            for _, line in plan
        ]
    finally:
        await shared.close()
    alone = []
    for key, line in plan:  # each session on an engine of its own: nothing to copy from
        engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1))
        await engine.start()
        try:
            alone += await run_turns(engine, [(key, line)])
        finally:
            await engine.close()
    assert [t for t, _ in together] == [t for t, _ in alone]
    common = [len(os.path.commonprefix([prompts[0], p])) for p in prompts[1:]]
    assert min(common) > 20  # the persona and the chat markup around it
    # b and c copied that much KV from a's sequence instead of prefilling it
    assert [f.reused_tokens for _, f in together] == [0, *common]
    assert stats["shared_prefix_tokens"] == sum(common)


async def test_sessions_opening_at_once_prefill_their_shared_persona_once(bundled_model):
    """Two sessions of the same NPC whose first lines come together: the second waits while the first prefills
    the long persona (in chunks of 16 tokens), then copies its KV instead of computing the same tokens beside it.
    Both replies are what each session gets alone."""
    import os

    from rtserver.engine.base import Message, Request
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    persona = (
        f"{PERSONA} She grows sage, mint and nettle behind her cottage by the old bridge, sells salves for burns and "
        "teas for coughs, and knows every path in the forest. She is kind to travellers but dislikes the miller, "
        "who owes her money. Wolves have been seen on the north road, and a stranger in a blue cloak has been "
        "asking about the ruins. Answer in one or two short sentences and stay in character."
    )
    plan = [("a", "Hello!"), ("b", "What do you sell?")]

    def request(key: str, line: str) -> Request:  # (a fresh one each time: a turn's end sets its cancel)
        return Request(key, [Message("system", persona), Message("user", line)], temperature=0, max_tokens=40)

    requests = [request(k, line) for k, line in plan]
    engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=4, prefill_chunk=16))
    await engine.start()
    try:
        log: list[tuple[str, str]] = []
        # generate() submits at once: b is waiting before a's prompt (many chunks) is half done.
        events = [engine.generate(r) for r in requests]
        together = await asyncio.gather(*(collect(e, k, log) for e, (k, _) in zip(events, plan, strict=True)))
        stats = engine.stats()
        prompts = [engine.model.tokenize(engine.model.template.render(r.messages)) for r in requests]
    finally:
        await engine.close()
    alone = []
    for key, line in plan:
        engine = LlamaEngine(bundled_model, EngineConfig(n_ctx=1024, slots=1))
        await engine.start()
        try:
            alone.append(await collect(engine.generate(request(key, line)), key, []))
        finally:
            await engine.close()
    assert [t for t, _ in together] == [t for t, _ in alone]
    common = len(os.path.commonprefix(prompts))
    assert common > 100  # the persona
    assert stats["shared_prefix_waits"] == 1
    assert stats["shared_prefix_tokens"] == common
    assert stats["prefilled_tokens"] == len(prompts[0]) + len(prompts[1]) - common
    assert together[1][1].reused_tokens == common


async def test_kv_is_reused_by_text_when_samples_do_not_retokenize(tmp_path, bundled_model):
    """A random-weight model samples token sequences that re-tokenize differently; the engine still reuses the
    whole history it holds, because it matches the cached tokens against the prompt's text."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine
    from training.random_gguf import write

    model = write(
        tmp_path,
        ROOT / "training" / "tokenizer.json",
        dim=64,
        layers=2,
        heads=4,
        kv_heads=2,
        ffn=128,
        vocab=4000,
        context=1024,
        seed=3,
    )
    engine = LlamaEngine(model, EngineConfig(n_ctx=1024, slots=1))
    await engine.start()
    try:
        (reply, first), (_, second) = await run_turns(engine, [("s", "Hello there!"), ("s", "And then?")])
        retokenized = engine.model.tokenize(reply)
    finally:
        await engine.close()
    assert first.completion_tokens == 80 and first.reason == "length"  # random weights: it never stops
    assert retokenized and len(retokenized) != first.completion_tokens  # the samples are not how their text splits
    # Everything the sequence held after turn one is reused: its prompt and every sampled token.
    assert second.reused_tokens >= first.prompt_tokens + first.completion_tokens - 1


def test_a_prompt_is_split_as_a_whole_though_only_its_new_text_is_tokenized(bundled_model):
    """A returning session's prompt reuses the tokens its sequence holds up to a control token and tokenizes only
    what follows; the result must be the tokenizer's split of the whole text, for a next turn (the sequence holds
    the history), a regenerated one (it holds more than the prompt), a prompt cut to fit (it holds turns the
    prompt no longer has) and a continued reply (its last word goes on)."""
    from rtserver.engine.base import Message
    from rtserver.engine.model import Model
    from rtserver.engine.planner import Planner

    model = Model(bundled_model)
    planner = Planner(model, n_ctx_seq=2048, can_shift=False, counters={})
    try:
        persona = Message("system", "You are Bram, the blacksmith of Ravenford.")
        turns = [Message("user", "What do you sell?"), Message("assistant", "Swords, helmets and axes.")]
        turns += [Message("user", "Any news?"), Message("assistant", "The harvest was good.")]
        before = model.template.render([persona, *turns]).encode()
        held = model.tokenize_bytes(before)
        cases = {
            "next turn": [persona, *turns, Message("user", "Tell me a story.")],
            "regenerate": [persona, *turns[:3]],
            "cut to fit": [persona, *turns[2:], Message("user", "Goodbye.")],
            # it holds " black" where the text now says " blacksmith", one token
            "continue": [persona, *turns[:3], Message("assistant", "I am the blacksmith.")],
        }
        for name, messages in cases.items():
            if name == "continue":
                partial = [persona, *turns[:3], Message("assistant", "I am the black")]
                held = model.tokenize_bytes(model.template.render(partial, continue_last=True).encode())
            text = model.template.render(messages, continue_last=name == "continue").encode()
            tokens = planner.tokenize(text, held)
            assert tokens == model.tokenize_bytes(text), name
            assert b"".join(model.piece(t, True) for t in tokens) == text, name
    finally:
        model.close()


async def test_cache_type_k_is_the_type_llama_cpp_keeps_keys_in(bundled_model):
    """Keys in q8_0 (the default: 34 bytes per 32 values against f16's 64) make a session's KV, as the engine
    saves it on eviction, about three quarters of its size with f16 keys; either way it is restored when the
    session comes back."""
    from rtserver.engine.llama import EngineConfig, LlamaEngine

    plan = [("a", "Hello!"), ("b", "Any news?"), ("a", "What do you sell?")]
    per_token = {}
    for kind in ("f16", "q8_0"):
        engine = LlamaEngine(
            bundled_model,
            EngineConfig(n_ctx=1024, slots=1, cache_types=(kind, "f16"), save_ahead=False, decode_ahead=False),
        )
        await engine.start()
        try:
            history: dict[str, list] = {}
            got = await run_turns(engine, plan[:2], history)  # b's turn evicts a: its KV is saved to host memory
            data, tokens = engine.kv.host["a"]
            per_token[kind] = len(data) / len(tokens)
            got += await run_turns(engine, plan[2:], history)
            restored = engine.stats()["kv_restored"]
        finally:
            await engine.close()
        assert restored == 1 and got[2][1].reused_tokens > 0  # a's KV came back, not recomputed
    assert 0.70 < per_token["q8_0"] / per_token["f16"] < 0.82


async def test_quantized_keys_keep_the_context_shift_on_heads_of_64_dimensions(tmp_path, bundled_model):
    """llama.cpp shifts quantized keys where it rotates them (heads of a multiple of 64 dimensions): the engine
    keeps the context shift there, and a sequence shifted in q8_0 decodes on. The bundled model's 32-dimension
    heads cannot (llama.cpp would crash), and the engine knows."""
    import llama_cpp as C

    from rtserver.engine.llama import EngineConfig, LlamaEngine
    from training.random_gguf import write

    model = write(tmp_path, ROOT / "training" / "tokenizer.json", dim=128, layers=2, heads=2, kv_heads=1, ffn=256,
                  vocab=2000, context=512, seed=3)  # fmt: skip
    bundled = LlamaEngine(bundled_model, EngineConfig(n_ctx=256, slots=1, cache_types=("q8_0", "f16")))
    engine = LlamaEngine(model, EngineConfig(n_ctx=256, slots=1, cache_types=("q8_0", "f16"), decode_ahead=False))
    try:
        bundled.load()
        engine.load()  # (no worker thread: this test drives llama.cpp itself)
        assert bundled.context is not None and engine.context is not None
        assert not bundled.context.can_shift
        assert engine.context.can_shift
        ctx, mem, b = engine.context.ptr, engine.context.mem, engine.context.batch
        for i in range(100):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = 5 + i % 50, i, 1, i == 99
            b.seq_id[i][0] = 0
        b.n_tokens = 100
        assert C.llama_decode(ctx, b) == 0
        C.llama_memory_seq_rm(mem, 0, 10, 50)  # what reuse.shift does: drop a span, move the rest back
        C.llama_memory_seq_add(mem, 0, 50, -1, -40)
        b.token[0], b.pos[0], b.logits[0], b.n_tokens = 7, 60, True, 1
        assert C.llama_decode(ctx, b) == 0  # the keys were re-rotated in q8_0, and decoding goes on
        assert C.llama_memory_seq_pos_max(mem, 0) == 60
    finally:
        await bundled.close()
        await engine.close()
