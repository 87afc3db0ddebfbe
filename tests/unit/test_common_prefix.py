import importlib.util
import random

from ..conftest import require


def test_the_common_prefix_of_two_token_lists_is_where_they_first_differ():
    require(importlib.util.find_spec("llama_cpp") is not None, "llama-cpp-python is not installed (scripts/install)")
    from rtserver.engine.planner import common_prefix

    r = random.Random(7)
    for _ in range(5000):
        a = [r.randint(0, 3) for _ in range(r.randint(0, 60))]
        b = a[: r.randint(0, len(a))] + [r.randint(0, 3) for _ in range(r.randint(0, 12))]
        a, b = (a, b) if r.random() < 0.5 else (b, a)
        first_difference = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        assert common_prefix(a, b) == first_difference, (a, b)
