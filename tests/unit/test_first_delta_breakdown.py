"""bench.first_delta's arithmetic: its ``first_step`` is the floor docs/benchmarks.md sets the peers' first deltas
against, so it must be the step that gave the first token, not a step the turn waited through."""

from bench.first_delta import breakdown


def _turn(submit: float, token: float) -> dict[str, float]:
    return {
        "start": submit - 0.01,
        "start_cpu": 0.0,
        "submit": submit,
        "submit_cpu": 0.0,
        "token": token,
        "written": token + 0.005,
    }


def test_first_step_is_the_decode_that_gave_the_first_token():
    turns = [
        _turn(1.0, 1.265),  # submitted while another turn's step was under way (0.9-1.2 s); its prompt at 1.23-1.26
        _turn(2.0, 2.046),  # the engine idle: its prompt alone, then a step after its first token (not counted)
        _turn(3.0, 3.043),  # another turn's prompt decoded first (3.001-3.011), then its own (3.012-3.042)
    ]
    spans = [
        [0.9, 1.2, "decode"],
        [1.21, 1.22, "_slot"],
        [1.23, 1.26, "decode"],
        [2.001, 2.005, "_slot"],
        [2.005, 2.045, "decode"],
        [2.047, 2.049, "decode"],
        [3.0005, 3.001, "_slot"],
        [3.001, 3.011, "decode"],
        [3.012, 3.042, "decode"],
    ]
    cpu = {"decode": [0.3, 0.03, 0.04, 0.002, 0.01, 0.03], "_slot": [0.01, 0.004, 0.0005]}

    out = breakdown(spans, turns, cpu)

    assert out["first_step"]["p50"] == 30.0  # ms
    assert out["first_step"]["mean"] == round((30 + 40 + 30) / 3, 3)  # not the steps it waited through
    assert out["decode"]["mean"] == round((200 + 30 + 40 + 10 + 30) / 3, 3)  # every decode on its way
    assert out["waiting"]["mean"] == round((210 + 1 + 0.5) / 3, 3)  # until the engine took a sequence for it
