"""Random search: seeded draws from the named distributions, and clear errors for a malformed one."""

import math

import pytest

from crossmed.errors import ConfigError
from crossmed.sweeps import draw_points, queue_commands

SPACE = ["train.learning_rate=loguniform(1e-4,1e-2)", "train.warmup_epochs=randint(0,3)",
         "model=choice(resnet_small,resnet18)", "train.weight_decay=uniform(0,0.001)"]


def test_seeded_draws_stay_inside_their_ranges():
    points = draw_points(SPACE, 40, seed=3)
    assert points == draw_points(SPACE, 40, seed=3) and points != draw_points(SPACE, 40, seed=4)
    rates = [float(p["train.learning_rate"]) for p in points]
    assert all(1e-4 <= r <= 1e-2 for r in rates)
    assert sum(r < 1e-3 for r in rates) > 10, "log-uniform: about half the draws lie in the lower decade"
    assert {p["train.warmup_epochs"] for p in points} == {"0", "1", "2", "3"}
    assert {p["model"] for p in points} == {"resnet_small", "resnet18"}
    assert all(0 <= float(p["train.weight_decay"]) <= 0.001 for p in points)


def test_queue_commands_name_each_point():
    commands = queue_commands("rs", draw_points(SPACE[:1], 2, seed=0), ["train.max_epochs=5"])
    assert [c[:6] for c in commands] == [["dvc", "exp", "run", "--queue", "-n", f"rs-{i}"] for i in (1, 2)]
    assert commands[0][6:8] == ["-S", "train.max_epochs=5"] and commands[0][8] == "-S"
    assert math.isfinite(float(commands[0][9].split("=", 1)[1]))


@pytest.mark.parametrize("spec,message", [("lr=uniform(2,1)", "low < high"), ("lr=loguniform(0,1)", "low > 0"),
                                          ("lr=normal(0,1)", "expected key="), ("lr=uniform(a,1)", "two numbers"),
                                          ("model=choice()", "at least one value")])
def test_malformed_distributions_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        draw_points([spec], 2, seed=0)
