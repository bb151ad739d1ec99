"""One logging set-up for every stage: time, stage, level and message on stderr."""

import logging
import sys


def configure_logging(stage: str, level: int = logging.INFO) -> logging.Logger:
    """Return the `crossmed.<stage>` logger after routing crossmed's logs to stderr."""
    root = logging.getLogger("crossmed")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    return logging.getLogger(f"crossmed.{stage}")
