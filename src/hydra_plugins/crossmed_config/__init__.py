"""Hydra imports every module under hydra_plugins when it starts: this one registers crossmed's config schemas."""

from crossmed.config import register_schemas

register_schemas()
