"""The package layers: every import between crossmed's packages runs down the layer list, so no cycle can form."""

import ast

from conftest import REPO

SRC = REPO / "src" / "crossmed"
# Top to bottom; a package may import its own modules and any package listed after it. "base" is the modules
# directly under crossmed/ (errors, files, logs, devices, tracking, ...), which import no package.
LAYERS = ["cli", "shared_tracking", "stages", "federated", "reporting", "sources", "export", "inference", "evaluation", "training", "model", "deid",
          "synthetic", "data", "base"]
BASE_EXCEPTIONS = {"cli", "stage"}  # the command line and the stage runner sit on top of everything


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (SRC / parts[1]).is_dir()):
        return parts[1]
    return parts[1] if len(parts) == 2 and parts[1] in BASE_EXCEPTIONS else "base"


def _imports():
    for path in SRC.rglob("*.py"):
        module = ".".join(("crossmed", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crossmed."):
                yield module, node.module
            elif isinstance(node, ast.Import):
                yield from ((module, a.name) for a in node.names if a.name.startswith("crossmed."))


def test_imports_run_down_the_layers():
    order = {name: i for i, name in enumerate([*LAYERS[:1], "stage", *LAYERS[1:]])}
    upward = sorted(f"{a} -> {b}" for a, b in _imports()
                    if _layer(a) != _layer(b) and order[_layer(a)] > order[_layer(b)])
    assert not upward, f"imports running back up the layers: {upward}"


def test_every_package_has_a_layer():
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS"
