"""Random search as queued DVC experiments: draw config values from distributions and `dvc exp run --queue` each point."""

import math
import random
import re
import subprocess
from collections.abc import Callable

from crossmed.errors import ConfigError

SPEC = re.compile(r"^(?P<key>[\w.\-/@]+)=(?P<kind>uniform|loguniform|randint|choice)\((?P<args>.*)\)$")


def _numbers(key: str, kind: str, args: list[str]) -> tuple[float, float]:
    try:
        low, high = (float(a) for a in args)
    except ValueError:
        raise ConfigError(key, f"{kind}() takes two numbers, got ({', '.join(args)})") from None
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(key, f"{kind}({low}, {high}) needs low < high" + (" and low > 0" if kind == "loguniform" else ""))
    return low, high


def parse_spec(spec: str) -> tuple[str, Callable[[random.Random], str]]:
    """Return (key, draw) for 'key=uniform(a,b)', 'loguniform(a,b)', 'randint(a,b)' (both ends included) or 'choice(x,y,...)'."""
    match = SPEC.match(spec.strip())
    if not match:
        raise ConfigError(spec, "expected key=uniform(a,b), key=loguniform(a,b), key=randint(a,b) or key=choice(x,y,...)")
    key, kind = match["key"], match["kind"]
    args = [a.strip() for a in match["args"].split(",") if a.strip()]
    if kind == "choice":
        if not args:
            raise ConfigError(key, "choice() needs at least one value")
        return key, lambda rng: rng.choice(args)
    low, high = _numbers(key, kind, args)
    if kind == "randint":
        return key, lambda rng: str(rng.randint(math.ceil(low), math.floor(high)))
    if kind == "loguniform":
        return key, lambda rng: f"{math.exp(rng.uniform(math.log(low), math.log(high))):.4g}"
    return key, lambda rng: f"{rng.uniform(low, high):.4g}"


def draw_points(specs: list[str], trials: int, seed: int) -> list[dict[str, str]]:
    """Return `trials` points, each {key: value} drawn from the specs with a generator seeded by `seed`."""
    if trials < 1:
        raise ConfigError("--trials", f"{trials} is not a positive number of trials")
    space = [parse_spec(spec) for spec in specs]
    if not space:
        raise ConfigError("sweep", "give at least one key=distribution(...)")
    rng = random.Random(seed)
    return [{key: draw(rng) for key, draw in space} for _ in range(trials)]


def queue_commands(name: str, points: list[dict[str, str]], fixed: list[str]) -> list[list[str]]:
    """Return one `dvc exp run --queue -n NAME-i -S ...` command per point, with the fixed overrides first."""
    return [["dvc", "exp", "run", "--queue", "-n", f"{name}-{index}",
             *(arg for override in fixed for arg in ("-S", override)),
             *(arg for key, value in point.items() for arg in ("-S", f"{key}={value}"))]
            for index, point in enumerate(points, 1)]


def queue_points(commands: list[list[str]]) -> None:
    """Run each queue command; raise ConfigError with DVC's message when one fails."""
    for command in commands:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ConfigError(" ".join(command[5:7]), f"dvc refused to queue it: {(result.stderr or result.stdout).strip()}")
