import itertools

from rtclient import Backoff


def test_full_jitter_draws_between_zero_and_the_doubling_cap():
    calls = []
    b = Backoff(base=0.5, cap=4.0, rand=lambda lo, hi: calls.append((lo, hi)) or hi)
    assert list(itertools.islice(b.delays(), 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert all(lo == 0.0 for lo, _ in calls)


def test_gives_up_after_max_attempts():
    assert len(list(Backoff(max_attempts=3, rand=lambda lo, hi: 0.0).delays())) == 3
