"""The code layout: imports point one way, no import circles, no long module without a stated reason.

Reads the source with :mod:`ast` (nothing is imported). Each checker is a plain function over a
folder, so the synthetic packages at the end show that each check can fail.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("savings_gym", "agents", "benchmarks")

LAYERS: dict[str, frozenset[str]] = {
    "savings_gym": frozenset(),
    "agents": frozenset({"savings_gym"}),
    "benchmarks": frozenset({"agents", "savings_gym"}),
    "benchmarks.safe_io": frozenset(),
    "benchmarks.savings": frozenset({"benchmarks.safe_io", "agents", "savings_gym"}),
    "benchmarks.sweep": frozenset({"benchmarks.savings", "benchmarks.safe_io", "agents", "savings_gym"}),
    "benchmarks.board": frozenset(
        {"benchmarks.sweep", "benchmarks.savings", "benchmarks.safe_io", "agents", "savings_gym"}
    ),
    "benchmarks.speed": frozenset(
        {"benchmarks.sweep", "benchmarks.savings", "benchmarks.safe_io", "agents", "savings_gym"}
    ),
    "benchmarks.cli": frozenset(
        {
            "benchmarks.speed",
            "benchmarks.board",
            "benchmarks.sweep",
            "benchmarks.savings",
            "benchmarks.safe_io",
            "agents",
            "savings_gym",
        }
    ),
}
"""Each layer (a package or module, the longest matching prefix wins) and the layers it may import
besides itself: ``benchmarks -> agents -> savings_gym``, and inside ``benchmarks``
``cli -> speed, board -> sweep -> savings -> safe_io`` (each package's docstring says the same)."""

LAZY_CIRCLES = {
    frozenset({"savings_gym.arm", "savings_gym.arm_grad"}): "arm_step hands a differentiable step to arm_grad's "
    "hand-written backward, which is built on arm's step terms",
}
"""Circles closed only by an import inside a function, each with its reason; none may run at import time."""

MAX_LINES = 500
LONG_REASON = "Over 500 lines because"
"""A module over :data:`MAX_LINES` lines says why in a docstring line starting with this."""


@dataclass(frozen=True)
class Import:
    """One import of a project module: who imports what, on which line, and whether at import time."""

    importer: str
    target: str
    line: int
    top_level: bool


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module under ``packages`` in ``root``, by dotted name (a package by its own name)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _runs_at_import(tree: ast.Module) -> set[ast.AST]:
    """The import nodes a module runs when it is imported: not those inside a function."""
    top: set[ast.AST] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                top.add(child)
            visit(child)

    visit(tree)
    return top


def imports(root: Path, packages: tuple[str, ...]) -> list[Import]:
    """Every import of a project module by a project module, relative ones and those inside functions too."""
    known = modules(root, packages)
    found = []
    for name, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        top = _runs_at_import(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from a import b` imports the module a.b when there is one, else the names in a
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in known:  # `import a.b.c` of a name inside a module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append(Import(name, target, node.lineno, node in top))
    return found


def layer(module: str, layers: dict[str, frozenset[str]]) -> str | None:
    """The layer ``module`` belongs to: the longest key of ``layers`` that is it or a package above it."""
    matches = [key for key in layers if module == key or module.startswith(key + ".")]
    return max(matches, key=len) if matches else None


def upward_imports(found: list[Import], layers: dict[str, frozenset[str]]) -> list[str]:
    """Each import that points against :data:`LAYERS`, as 'importer:line imports target'."""
    problems = []
    for each in found:
        own, theirs = layer(each.importer, layers), layer(each.target, layers)
        if own == theirs or theirs is None or own is None:
            continue
        if theirs not in layers[own]:
            allowed = sorted(layers[own])
            problems.append(f"{each.importer}:{each.line} imports {each.target} ({own} may import {allowed})")
    return problems


def cycles(found: list[Import], top_level_only: bool = True) -> list[list[str]]:
    """The import circles (strongly connected components of two or more modules), each as a closed path."""
    graph: dict[str, set[str]] = {}
    for each in found:
        if each.top_level or not top_level_only:
            graph.setdefault(each.importer, set()).add(each.target)
            graph.setdefault(each.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_closed_path(graph, set(component)) for component in components]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One circle through a strongly connected component, first module repeated at the end."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & component)
        if start in nxt and len(path) > 1:
            return [*path, start]
        unseen = [each for each in nxt if each not in seen]
        if not unseen:  # a detour: close on the first module already on the path
            back = nxt[0]
            return [*path[path.index(back) :], back]
        path.append(unseen[0])
        seen.add(unseen[0])


def long_modules(root: Path, packages: tuple[str, ...]) -> list[str]:
    """Each module over :data:`MAX_LINES` lines whose docstring has no line starting with :data:`LONG_REASON`."""
    problems = []
    for name, path in modules(root, packages).items():
        text = path.read_text()
        lines = len(text.splitlines())
        if lines <= MAX_LINES:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith(LONG_REASON) for line in doc.splitlines()):
            problems.append(f"{name} has {lines} lines and no docstring line starting {LONG_REASON!r}")
    return problems


def test_imports_point_one_way() -> None:
    assert upward_imports(imports(ROOT, PACKAGES), LAYERS) == []


def test_no_import_circle() -> None:
    found = imports(ROOT, PACKAGES)
    assert cycles(found) == [], "import circles at import time"
    lazy = [cycle for cycle in cycles(found, top_level_only=False) if frozenset(cycle) not in LAZY_CIRCLES]
    assert lazy == [], "import circles through imports inside functions"


def test_long_modules_say_why() -> None:
    assert long_modules(ROOT, PACKAGES) == []


def test_every_package_says_what_it_may_import() -> None:
    for name, path in modules(ROOT, PACKAGES).items():
        if path.name == "__init__.py":
            assert "import" in (ast.get_docstring(ast.parse(path.read_text())) or ""), name


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_can_fail(tmp_path: Path) -> None:
    """A synthetic project with an upward import, a circle through relative imports, and a long module."""
    _write(
        tmp_path,
        {
            "low/__init__.py": '"""Low."""\n',
            "low/world.py": "def f():\n    from high.top import g\n",
            "high/__init__.py": '"""High."""\n',
            "high/top.py": "from .middle import h\n",
            "high/middle.py": "import high.top\n\n\ndef later():\n    from high import lazy\n",
            "high/lazy.py": "from high.middle import later\n",
            "low/long.py": '"""Long."""\n' + "x = 1\n" * MAX_LINES,
            "low/long_ok.py": f'"""Long.\n\n{LONG_REASON} it must be.\n"""\n' + "x = 1\n" * MAX_LINES,
        },
    )
    packages = ("low", "high")
    found = imports(tmp_path, packages)
    layers = {"low": frozenset(), "high": frozenset({"low"})}
    assert upward_imports(found, layers) == [
        "low.world:2 imports high.top (low may import [])",
    ]
    assert cycles(found) == [["high.middle", "high.top", "high.middle"]]
    assert cycles(found, top_level_only=False) == [["high.lazy", "high.middle", "high.lazy"]]
    assert long_modules(tmp_path, packages) == [
        f"low.long has {MAX_LINES + 1} lines and no docstring line starting {LONG_REASON!r}"
    ]
