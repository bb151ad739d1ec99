"""One logging set-up for every stage: time, stage, level and message on stderr."""

import logging
import sys
import warnings


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record is emitted: test runners and embedding tools swap it."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def configure_logging(stage: str, level: int = logging.INFO) -> logging.Logger:
    """Return the `crossmed.<stage>` logger after routing crossmed's logs to stderr."""
    root = logging.getLogger("crossmed")
    if not root.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s [%(name)s] %(levelname)s %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    quiet_pydicom()
    return logging.getLogger(f"crossmed.{stage}")


def quiet_pydicom() -> None:
    """Keep pydicom's warnings off the console and out of logs: they quote file values (a name, an ID, a UID)."""
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
