"""The malformed-frame budget: a burst, then a steady rate; unknown_type never spends it."""

import pytest
from rtprotocol import ERROR_CODES, BadFrameBudget, ProtocolError, validate_client_frame
from rtprotocol.budget import COUNTED_CODES


def test_a_burst_is_allowed_and_one_more_is_not():
    b = BadFrameBudget(burst=32, per_s=1.0)
    assert all(b.spend(100.0) for _ in range(32))
    assert not b.spend(100.0)


def test_the_budget_refills_at_the_announced_rate():
    b = BadFrameBudget(burst=2, per_s=1.0)
    assert b.spend(0.0) and b.spend(0.0) and not b.spend(0.0)
    assert not b.spend(0.5)  # half a token back: not yet
    assert b.spend(1.0)  # a whole one now
    assert not b.spend(1.0)


def test_a_client_at_the_rate_is_never_closed():
    b = BadFrameBudget(burst=4, per_s=1.0)
    assert all(b.spend(float(i)) for i in range(1000))


def test_a_client_faster_than_the_rate_is_closed_in_the_end():
    b = BadFrameBudget(burst=32, per_s=1.0)
    spent = [b.spend(i / 1.1) for i in range(1000)]
    assert not all(spent)
    assert all(spent[:300])  # the burst absorbs the excess for a while (32 / (1 - 1/1.1) ~ 352 frames)


def test_idle_time_refills_no_more_than_the_burst():
    b = BadFrameBudget(burst=3, per_s=10.0)
    b.spend(0.0)
    assert b.left(1e6) == 3
    assert [b.spend(1e6) for _ in range(4)] == [True, True, True, False]


def test_a_clock_that_goes_back_mints_nothing():
    b = BadFrameBudget(burst=1, per_s=1.0)
    assert b.spend(10.0)
    assert not b.spend(5.0)
    assert not b.spend(10.5)
    assert b.spend(11.0)


def test_zero_rate_is_a_budget_for_the_whole_connection():
    b = BadFrameBudget(burst=2, per_s=0.0)
    assert [b.spend(t) for t in (0.0, 1e3, 1e6)] == [True, True, False]


@pytest.mark.parametrize(("burst", "per_s"), [(0, 1.0), (1, -1.0)])
def test_nonsense_budgets_are_refused(burst, per_s):
    with pytest.raises(ValueError):
        BadFrameBudget(burst, per_s)


def test_only_malformed_frames_count():
    assert COUNTED_CODES <= set(ERROR_CODES)
    assert BadFrameBudget.counts("bad_frame") and BadFrameBudget.counts("bad_field")
    for code in ("unknown_type", "busy", "turn_running", "too_large", "rate_limited"):
        assert not BadFrameBudget.counts(code)


def test_a_thousand_unknown_types_at_once_never_close():
    """What a connection does with each frame, without the socket: validate, and spend only what counts."""
    b = BadFrameBudget()
    closed = False
    for i in range(1000):
        try:
            validate_client_frame({"t": "future.frame", "id": i})
        except ProtocolError as exc:
            assert exc.code == "unknown_type"
            closed = closed or (b.counts(exc.code) and not b.spend(0.0))
    assert not closed
    assert b.left(0.0) == 32
