import pytest
from rtprotocol import FrameLog, GapError, SeqTracker


def filled(n, capacity=5, epoch="e1"):
    log = FrameLog(epoch, capacity)
    for i in range(1, n + 1):
        assert log.append(f"f{i}") == i
    return log


def test_resume_returns_exactly_the_missed_frames():
    r = filled(4).resume("e1", 2)
    assert r.recovered and r.items == ["f3", "f4"]


def test_resume_at_the_head_recovers_nothing_missing():
    r = filled(4).resume("e1", 4)
    assert r.recovered and r.items == []


def test_resume_from_zero_when_everything_is_kept():
    assert filled(3).resume("e1", 0).items == ["f1", "f2", "f3"]


def test_gap_older_than_the_log_is_all_or_nothing():
    log = filled(9, capacity=5)  # keeps 5..9
    assert log.first_seq == 5
    assert log.resume("e1", 4).recovered
    r = log.resume("e1", 3)
    assert not r.recovered and r.items == [] and r.why == "gap_too_old"


def test_other_epoch_is_not_recovered():
    r = filled(3).resume("e0", 2)
    assert not r.recovered and r.why == "epoch_changed"


def test_client_ahead_of_server_is_not_recovered():
    assert filled(3).resume("e1", 7).why == "ahead"


def test_tracker_drops_duplicates_and_detects_gaps():
    t = SeqTracker()
    t.reset("e", 3)
    assert not t.accept(2) and not t.accept(3)
    assert t.accept(4)
    with pytest.raises(GapError) as info:
        t.accept(6)
    assert (info.value.expected, info.value.got) == (5, 6)
    assert t.last_seq == 4


def test_an_aged_out_log_sends_a_snapshot_to_whoever_missed_frames():
    log = filled(4)
    log.age_out()
    assert (log.epoch, log.last_seq, log.first_seq) == ("e1", 4, 5)
    assert log.resume("e1", 3).why == "gap_too_old"
    assert log.resume("e1", 4).recovered  # missed nothing: nothing to replay
    assert log.append("f5") == 5
    assert log.resume("e1", 4).items == ["f5"]
