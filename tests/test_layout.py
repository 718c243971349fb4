"""The house rules: one `agon` namespace, folders as layers, imports that only point down."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agon.settings import REPO_ROOT

#: folder -> (import name, layer); a module may import its own layer or lower ones only
LAYERS = {
    "agon": ("agon", 0),  # settings, errors, small helpers
    "schemas": ("agon.schemas", 1),  # the event contract
    "streams": ("agon.streams", 2),  # a worker's Kafka runtime, the local fleet and broker
    "agents": ("agon.agents", 3),  # the debate's domain
    "connectors": ("agon.connectors", 4),  # CLI, LLM backends, transcript client
}
OLD_TOP_LEVEL = {"agents", "streams", "connectors", "schemas"}


def layer_of(module: str) -> int | None:
    """The layer of an agon module name, None for anything else."""
    if module != "agon" and not module.startswith("agon."):
        return None
    best = 0
    for name, layer in LAYERS.values():
        if module == name or module.startswith(name + "."):
            best = max(best, layer)
    return best


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, at any depth (function-level imports too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def back_edges(root: Path) -> list[str]:
    problems = []
    for folder, (_, own) in LAYERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            for line, module in imports(path):
                where = f"{path.relative_to(root)}:{line}"
                if module.split(".")[0] in OLD_TOP_LEVEL:
                    problems.append(f"{where} imports {module}: agon's packages live under agon.*")
                target = layer_of(module)
                if target is not None and target > own:
                    problems.append(f"{where} ({folder}, layer {own}) imports {module} (layer {target})")
    return problems


def test_no_module_imports_from_a_higher_layer() -> None:
    assert back_edges(REPO_ROOT) == []


def test_the_walk_finds_a_back_edge(tmp_path: Path) -> None:
    for folder in LAYERS:
        (tmp_path / folder).mkdir()
    (tmp_path / "schemas" / "codec.py").write_text(
        "def f():\n    from agon.agents.roles import build\n    return build\n"
    )
    (tmp_path / "agents" / "old.py").write_text("import streams.app\n")
    problems = back_edges(tmp_path)
    assert len(problems) == 2
    assert "schemas/codec.py:2 (schemas, layer 1) imports agon.agents.roles (layer 3)" in problems


@pytest.mark.timeout(300)
def test_the_wheel_installs_only_agon(tmp_path: Path) -> None:
    # a clean copy: setuptools builds in the source tree, where an old build/ could leak in
    source = tmp_path / "source"
    junk = (".git", ".venv", ".agon*", "build", "*.egg-info", "__pycache__", ".*_cache")
    shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(*junk))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("agon-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"agon", wheel.name.split("-py")[0] + ".dist-info"}
    for needed in ("agon/schemas/inbox.avsc", "agon/schemas/v1/inbox.avsc", "agon/agents/roles.py"):
        assert needed in names

    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    top = {p.name for p in target.iterdir()} - {"bin"}
    assert {t for t in top if not t.endswith(".dist-info")} == {"agon"}
    # the installed copy imports from the target, not from this checkout
    out = subprocess.run(
        [sys.executable, "-c", "import agon.schemas, agon.connectors.cli; print(agon.schemas.SCHEMA_DIR)"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(target / "agon" / "schemas")
