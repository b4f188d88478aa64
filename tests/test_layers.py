"""The import graph, read from the source (ast, nothing executed): layers run one way and the
toolkit's subpackages import each other without cycles (DESIGN.md, "Layers run one way")."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first; a module may import its own layer and the layers below it, never one above.
LAYERS = [
    {"toolkit", "toolkit.config", "toolkit.registry", "toolkit.files"},
    {"toolkit.model"},
    {"toolkit.data", "toolkit.interp", "toolkit.families"},
    {"toolkit.world"},
    {"toolkit.train"},
    {"toolkit.eval", "toolkit.importers"},
    {"toolkit.grid"},
    {"analysis", "paper_figures"},
    {"toolkit.cli", "toolkit.commands"},  # the command layer: the top floor
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
PACKAGES = ("toolkit", "analysis", "paper_figures")


def unit_of(module: str) -> str | None:
    """The layer unit of a dotted module name: toolkit.<sub> for the toolkit, else its package."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    if parts[0] != "toolkit":
        return parts[0]
    return "toolkit" if len(parts) == 1 else f"toolkit.{parts[1]}"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{alias.name}" for alias in node.names}
    return out


def edges() -> dict[tuple[str, str], list[str]]:
    """(importing unit, imported unit) -> the files where it happens."""
    found: dict[tuple[str, str], list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            src = unit_of(module_name(path))
            for target in imports_of(path):
                dst = unit_of(target)
                if dst is None or dst == src:
                    continue
                found.setdefault((src, dst), []).append(str(path.relative_to(ROOT)))
    return found


def test_every_unit_has_a_layer():
    units = {u for edge in edges() for u in edge}
    assert units <= RANK.keys(), units - RANK.keys()


def test_no_layer_imports_a_layer_above_it():
    upward = {f"{a} -> {b}: {', '.join(sorted(set(files)))}" for (a, b), files in edges().items() if RANK[b] > RANK[a]}
    assert not upward, "\n".join(sorted(upward))


def test_toolkit_subpackages_have_no_import_cycle():
    graph: dict[str, set[str]] = {}
    for a, b in edges():
        if a.startswith("toolkit") and b.startswith("toolkit"):
            graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a, {b}))
    assert not cycles, cycles


def test_the_checker_sees_function_level_and_relative_imports(tmp_path):
    path = ROOT / "toolkit" / "train" / "loop.py"
    assert "toolkit.data.mixture" in imports_of(path)
    assert unit_of("toolkit.train.loop") == "toolkit.train" and unit_of("analysis.probing") == "analysis"
    assert unit_of("numpy") is None
