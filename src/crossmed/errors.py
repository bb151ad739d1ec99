"""Errors that stop a stage with a message naming the file or config key at fault."""


class CrossmedError(Exception):
    """Base class: a stage stops and prints this message, no traceback."""


class InputError(CrossmedError):
    """Bad input data: names the offending file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)  # worker processes send these back pickled


class ConfigError(CrossmedError):
    """A config value that cannot be used: names the key and the reason."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"config key '{key}': {reason}")

    def __reduce__(self):
        return type(self), (self.key, self.reason)


def report_problems(where, problems: list[str], limit: int = 30) -> None:
    """Raise one InputError listing every problem (the first `limit` in full), or return when there are none."""
    if not problems:
        return
    shown = "\n  - ".join(problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    raise InputError(where, f"{len(problems)} problem(s):\n  - {shown}{more}")
