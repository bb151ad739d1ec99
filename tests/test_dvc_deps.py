"""dvc.yaml's dependencies cover what each stage imports: a change to any module a stage runs re-runs that stage."""

import ast
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
DYNAMIC = {"crossmed.sources": "every source module: get_source imports the one data.source names"}


def module_file(name: str) -> Path | None:
    """Return the file of crossmed module `name` (a package's __init__.py), or None when it is not crossmed's."""
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """Return the crossmed modules a file imports anywhere (top level or inside functions), with their parent packages."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("crossmed"):
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from crossmed.stages import train`
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("crossmed")}
    parents = {".".join(n.split(".")[:i]) for n in names for i in range(1, n.count(".") + 1)}
    return {n for n in names | parents if module_file(n)}


def import_closure(script: Path) -> set[Path]:
    """Return every crossmed file the stage script can import, following imports transitively."""
    seen, todo, files = set(), [script], {script}
    while todo:
        for name in imported_modules(todo.pop()):
            if name in seen:
                continue
            seen.add(name)
            found = [module_file(name)]
            if name in DYNAMIC:
                found += sorted((SRC / Path(*name.split("."))).glob("*.py"))
            for path in found:
                if path not in files:
                    files.add(path)
                    todo.append(path)
    return files


def covered(path: Path, deps: list[str]) -> bool:
    """True when `path` is a dependency or lies inside a folder dependency."""
    relative = path.relative_to(REPO).as_posix()
    return any(relative == d or relative.startswith(d.rstrip("/") + "/") for d in deps)


STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_yaml_covers_each_stages_imports(stage):
    deps = [d for d in STAGES[stage]["deps"] if not d.startswith("${")]
    missing = sorted(p.relative_to(REPO).as_posix() for p in import_closure(REPO / "pipelines" / f"{stage}.py")
                     if not covered(p, deps))
    assert not missing, f"dvc.yaml stage '{stage}' misses dependencies it imports: {missing}"


def test_the_closure_follows_imports_inside_functions():
    closure = {p.relative_to(SRC).as_posix() for p in import_closure(REPO / "pipelines" / "train.py") if SRC in p.parents}
    assert {"crossmed/stages/train.py", "crossmed/model/networks.py", "crossmed/training/distributed.py"} <= closure
    assert "crossmed/inference/predict.py" not in closure, "only what the stage can run"
