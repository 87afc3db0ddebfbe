"""Shedding through the one admission point: memory pressure refuses the lowest priorities first, the player's
line last; new sessions are refused while the default priority is."""

from __future__ import annotations

import pytest

from rtserver.admission import Admission
from rtserver.errors import Busy


def refused(a: Admission, priority: int) -> bool:
    try:
        a.admit(priority)
    except Busy as exc:
        assert exc.retry_after > 0
        return True
    a.release(priority)
    return False


@pytest.mark.parametrize(
    ("pressure", "background", "normal", "player", "sessions"),
    [
        (0.5, False, False, False, False),
        (0.95, True, False, False, False),
        (1.05, True, True, False, True),
        (1.3, True, True, True, True),
    ],
)
def test_memory_pressure_sheds_lowest_priority_first(pressure, background, normal, player, sessions):
    a = Admission(capacity=4, max_queued=10, max_wait=10.0, pressure=lambda: pressure)
    assert (refused(a, -5), refused(a, 0), refused(a, 5)) == (background, normal, player)
    try:
        a.admit_session()
        got = False
    except Busy:
        got = True
    assert got == sessions


def test_a_full_queue_refuses_new_sessions_but_not_a_higher_priority_turn():
    a = Admission(capacity=1, max_queued=1, max_wait=100.0)
    a.admit()
    a.admit()  # one running, one waiting: the queue is full at priority 0
    with pytest.raises(Busy):
        a.admit_session()
    a.admit(5)  # the player's line: nothing of a higher priority is ahead of it
