"""The architecture as docs/ARCHITECTURE.md states it: cores never import rooms, the packages' import graph has no
cycle, and every path and symbol the page names exists."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORES = ("sda.utils", "sda.diffusion", "sda.models")
# the one direction allowed between cores (a lower core never imports a higher one)
CORE_ORDER = {"sda.utils": 0, "sda.diffusion": 1, "sda.models": 2}


def _unit(module: str) -> str:
    """A module's package (``sda.align.runner`` -> ``sda.align``); top-level modules are their own unit."""
    parts = module.split(".")
    return ".".join(parts[:2])


def import_graph() -> dict[str, set[str]]:
    """Package -> the sda packages its modules import (at any depth, function-level imports included)."""
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "sda").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        src = _unit(module)
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                if n.startswith("sda.") and _unit(n) != src:
                    graph.setdefault(src, set()).add(_unit(n))
    return graph


def test_cores_never_import_rooms_and_go_one_way() -> None:
    graph = import_graph()
    for core in CORES:
        for dep in graph.get(core, ()):
            assert dep in CORES, f"{core} imports the room {dep}"
            assert CORE_ORDER[dep] < CORE_ORDER[core], f"{core} imports {dep}: a back arrow between cores"


def test_the_package_graph_has_no_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            assert state.get(dep) != 1, " -> ".join([*path, node, dep])
            if dep not in state:
                visit(dep, [*path, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_every_path_and_symbol_named_in_the_architecture_page_exists() -> None:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    refs = set(re.findall(r"`((?:sda|tests)/[\w/]+(?:\.py)?)(?::(\w+))?", text))
    assert len(refs) > 30
    for path, symbol in refs:
        assert (ROOT / path).exists(), path
        if symbol:
            module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
            assert hasattr(module, symbol), f"{path}:{symbol}"
    for dotted in set(re.findall(r"`(sda\.[\w.]+)`", text)):  # sda.utils.io.atomic_write, ...
        parts = dotted.split(".")
        for i in range(len(parts), 1, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            break
        else:
            raise AssertionError(dotted)


def test_no_tracked_file_cites_a_document_outside_the_repository() -> None:
    """Facts a file needs are stated where used: nothing points at notes that are not in the repository."""
    names = ("PAP" + "ER.md", "../" + "shared")  # split so that this file does not match itself
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    offenders = []
    for rel in tracked.stdout.split("\0"):
        path = ROOT / rel
        if not rel or not path.is_file() or path.suffix in (".png", ".pt", ".pth", ".npz", ".gz", ".ttf"):
            continue
        text = path.read_text(errors="ignore")
        offenders += [f"{rel}: {n}" for n in names if n in text]
    assert not offenders, offenders
