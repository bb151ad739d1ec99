"""Where a study's images come from: one module per `data.source`, found by name.

`data.source=NAME` selects `crossmed/sources/NAME.py`, whose SOURCE (a crossmed.sources.base.DataSource) acquires
the data (synthesize stage), de-identifies it (deidentify), reads it into the processed format (preprocess) and
describes it (data card, report). A new source (a PACS, a federated site) is one new module here.
"""

import importlib
import pkgutil

from crossmed.errors import ConfigError

NOT_SOURCES = {"base", "medmnist_files"}  # modules of this package that are not sources themselves


def source_names() -> list[str]:
    """Return the names data.source accepts (the source modules of this package), without importing them."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in NOT_SOURCES)


def get_source(name: str):
    """Return the DataSource of `name`; ConfigError naming data.source when there is none."""
    name = str(name)
    if name not in source_names():
        raise ConfigError("data.source", f"unknown source '{name}' (known: {', '.join(source_names())})")
    return importlib.import_module(f"{__name__}.{name}").SOURCE
