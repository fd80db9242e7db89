"""The timing helpers the benchmarks' ratios rest on."""

import time

from seld_edge.benchmark import time_calls_in_turns


def test_calls_are_timed_in_turns_and_each_gets_its_own_median() -> None:
    order: list[str] = []

    def call(name: str, seconds: float):
        def fn() -> None:
            order.append(name)
            time.sleep(seconds)

        return fn

    medians = time_calls_in_turns({"slow": call("slow", 0.02), "fast": call("fast", 0.0)}, rounds=4, warmup=1)
    assert order == ["slow"] + ["fast"] + ["slow", "fast"] * 4  # warm-ups first, then one of each per round
    assert set(medians) == {"slow", "fast"}
    assert medians["slow"] >= 0.02 > medians["fast"]
