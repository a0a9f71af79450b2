"""The package's shape: its imports run one way (no cycles, counting imports inside functions), the
root holds only its face, and every path the README's reading order names exists.

The import graph is read with ``ast`` from the source, not by importing: an import inside a function
is an edge too, since a cycle through one still ties the two modules together for a reader.
"""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minivgg"


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def resolve(name, known):
    """The package module an imported name lives in: the longest known prefix of ``name``."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(path, name, known):
    """The package modules ``path`` imports, at the top or inside functions (every ast node)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y, from .. import z
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{alias.name}" for alias in node.names]  # a submodule, or a name of mod itself
        for target in targets:
            dep = resolve(target, known)
            if dep and dep != name and target.startswith("minivgg"):
                found.add(dep)
    return found


def graph():
    known = modules()
    return {name: imports(path, name, known) for name, path in known.items()}


def find_cycle(edges):
    """One cycle of the directed graph as a list of modules [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    known = {"minivgg", "minivgg.network", "minivgg.network.vgg", "minivgg.network.backprop"}
    src = ROOT / "tests" / "_cycle_probe.py"
    try:  # an import inside a function counts as an edge
        src.write_text("def f():\n    from ..network import vgg\n")
        assert imports(src, "minivgg.network.backprop", known) == {"minivgg.network.vgg"}
    finally:
        src.unlink()


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_package_module_is_reached_by_the_graph():
    """The graph is not vacuous: the network imports its layers, the scripts' commands import the network."""
    edges = graph()
    assert "minivgg.layers.conv" in edges["minivgg.network.table"] | edges["minivgg.network.vgg"]
    assert "minivgg.network.backprop" in edges["minivgg.network.vgg"]
    assert "minivgg.network.vgg" not in edges["minivgg.network.backprop"]  # the backward pass reads the table only


def test_the_root_keeps_its_face():
    root = sorted(p.name for p in PACKAGE.glob("*.py"))
    others = [n for n in root if n not in ("__init__.py", "__main__.py")]
    assert len(others) <= 4, others


def test_every_path_the_readme_names_exists():
    """Paths in backticks or links that look like files of the project (minivgg/..., scripts/..., ...)."""
    text = (ROOT / "README.md").read_text()
    names = set(re.findall(r"`((?:minivgg|scripts|tests|docs|notebooks|weights)/[\w./-]*)`", text))
    names |= set(re.findall(r"\]\(((?:minivgg|scripts|tests|docs|notebooks|weights)/[\w./-]*)[)#]", text))
    assert len(names) >= 10, names  # the reading order names the folders and files
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, f"README.md names paths that do not exist: {missing}"
