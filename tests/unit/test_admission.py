import pytest

from rtserver.admission import Admission
from rtserver.errors import Busy


def test_turns_within_capacity_never_wait():
    a = Admission(capacity=2, max_queued=0, max_wait=0.0)
    a.admit()
    a.admit()
    with pytest.raises(Busy):  # a third would queue, and no queue is allowed
        a.admit()


def test_queue_bound_then_busy_with_retry_after_from_recent_turn_times():
    a = Admission(capacity=1, max_queued=2, max_wait=100.0)
    a.admit()
    a.done(4.0)  # one turn took 4 s
    for _ in range(3):
        a.admit()  # one running, two waiting
    assert a.expected_wait() == 12.0
    with pytest.raises(Busy) as info:
        a.admit()
    assert info.value.retry_after == 12.0 and info.value.code == "busy"


def test_expected_wait_bound():
    a = Admission(capacity=2, max_queued=100, max_wait=5.0)
    a.admit()
    a.done(3.0)
    for _ in range(4):
        a.admit()  # two running, two waiting: the next waits for two turns to end, one per place
    assert a.expected_wait() == 6.0
    with pytest.raises(Busy):
        a.admit()
    a.done(3.0)
    a.admit()  # one ended: room again


def test_averages_turn_times():
    a = Admission(capacity=1, max_queued=10, max_wait=100.0, smoothing=0.5)
    for seconds in (2.0, 4.0):
        a.admit()
        a.done(seconds)
    assert a.turn_seconds == 3.0 and a.running == 0


def test_overload_sheds_low_priority_turns_first():
    a = Admission(capacity=1, max_queued=1, max_wait=100.0)
    a.admit(priority=-5)  # background chatter: one running, one waiting
    a.admit(priority=-5)
    with pytest.raises(Busy):
        a.admit(priority=-5)  # a third background line would exceed the queue bound
    a.admit(priority=5)  # the player's line overtakes both waiting turns: nothing is ahead of it
    a.admit(priority=5)  # one of the same priority ahead: still within the bound
    with pytest.raises(Busy):
        a.admit(priority=5)
    with pytest.raises(Busy):
        a.admit()  # priority 0: the two player turns are ahead of it, over the bound


def test_priority_bookkeeping_returns_to_empty():
    a = Admission(capacity=2, max_queued=0, max_wait=0.0)
    a.admit(priority=3)
    a.admit(priority=-3)
    a.done(1.0, priority=3)
    a.done(1.0, priority=-3)
    assert a.running == 0 and not a.by_priority
    a.admit(priority=0)
    a.admit(priority=0)
