"""The structural rules of the package, read from the code's syntax trees (nothing is imported or run).

`import_problems` checks the rule `docs/architecture.md` states: imports of the package's own modules run one
way, from a room (a subpackage, or one of the top modules) to the same room or a lower one, never in a circle
(imports inside functions and `TYPE_CHECKING` blocks count), and never inside a function except where
`LAZY_ALLOWED` says why. `size_problems` checks the size limits: files of at most `MAX_FILE_LINES` lines,
functions of at most `MAX_FUNCTION_LINES` but the model's forward passes named in `LONG_FUNCTIONS_ALLOWED`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

# the package's rooms, lowest first: a module may import its own room and the rooms below it
ROOMS = (
    ("dsaml.errors", "dsaml.modeling"),
    ("dsaml.utils",),
    ("dsaml.audio",),
    ("dsaml.datasets_scripts",),
    ("dsaml.data",),
    ("dsaml.adaptation",),
    ("dsaml.inference",),
    ("dsaml.personalization",),
    ("dsaml.evaluation",),
    ("dsaml.training",),
    ("dsaml.demo",),
    ("dsaml.commands",),
    ("dsaml.cli", "dsaml"),
)
# rooms that may use only some of the rooms below them (the rest of the package is off limits)
ONLY = {
    "dsaml.modeling": (),  # the remote code: torch, transformers, numpy and its own files
    "dsaml.errors": (),
    "dsaml.datasets_scripts": ("dsaml.errors", "dsaml.utils", "dsaml.audio"),
}
# (module, function) where an import of the package's own modules may wait until the function runs
LAZY_ALLOWED = {
    ("dsaml", "__getattr__"): "the lazy public names: `import dsaml` loads neither torch nor transformers",
    ("dsaml.cli", "main"): "the command registry: one command's dependencies never slow another's start",
    ("dsaml.commands.*", "main"): "a command checks its arguments and input files before torch and the model load",
}
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
# the model's forward passes, whose steps read best as one sequence (STYLE.md: transformers' modeling files)
LONG_FUNCTIONS_ALLOWED = {("dsaml.modeling.modeling_dsaml", "DSAMLForDynamicEmotionRecognition.forward")}


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. dsaml.training.loop
    path: Path
    is_package: bool


def package_modules(roots: Mapping[str, Path], exclude: Iterable[Path] = ()) -> dict[str, Module]:
    """Every module under each root folder, by dotted name (`{"dsaml": src/dsaml, "dsaml.modeling": modeling}`),
    but those under a folder of `exclude` (test data)."""
    modules = {}
    excluded = [Path(e) for e in exclude]
    for package, folder in roots.items():
        for path in sorted(Path(folder).rglob("*.py")):
            if any(e in path.parents for e in excluded):
                continue
            parts = list(path.relative_to(folder).with_suffix("").parts)
            is_package = parts[-1] == "__init__"
            if is_package:
                parts = parts[:-1]
            name = ".".join([package, *parts])
            modules[name] = Module(name, path, is_package)
    return modules


def room_of(name: str) -> str:
    """The room of a module: the longest entry of `ROOMS` that is it or contains it."""
    best = ""
    for rooms in ROOMS:
        for room in rooms:
            if (name == room or name.startswith(room + ".")) and len(room) > len(best):
                best = room
    return best


def level_of(room: str) -> int:
    return next(i for i, rooms in enumerate(ROOMS) if room in rooms)


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: Path
    line: int
    function: str | None  # the enclosing function, when the import runs only when it is called


def _resolve(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    base = base if module.is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(name: str, modules: Mapping[str, Module], imported: Iterable[str] = ()) -> list[str]:
    """The package modules an import names: `from a.b import c` imports a.b.c when c is a module."""
    out = []
    if name in modules:
        out.append(name)
    for symbol in imported:
        if f"{name}.{symbol}" in modules:
            out.append(f"{name}.{symbol}")
    return out


def import_edges(modules: Mapping[str, Module]) -> list[Edge]:
    edges = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        for node, function in _walk(tree, None):
            if isinstance(node, ast.Import):
                targets = [t for a in node.names for t in _targets(a.name, modules)]
            elif isinstance(node, ast.ImportFrom):
                targets = _targets(_resolve(module, node), modules, [a.name for a in node.names])
            elif _is_import_module_call(node):
                targets = _targets(node.args[0].value, modules)
            else:
                continue
            edges += [Edge(module.name, t, module.path, node.lineno, function) for t in targets if t != module.name]
    return edges


def _is_import_module_call(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name))
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "import_module"
            and bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _walk(node: ast.AST, function: str | None):
    for child in ast.iter_child_nodes(node):
        name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        yield child, function
        yield from _walk(child, function if name is None else (f"{function}.{name}" if function else name))


def _lazy_allowed(edge: Edge) -> bool:
    top = edge.function.split(".")[0]
    for (module, function), _ in LAZY_ALLOWED.items():
        matches = edge.source == module or (module.endswith(".*") and edge.source.startswith(module[:-1]))
        if matches and top == function:
            return True
    return False


def import_problems(modules: Mapping[str, Module]) -> list[str]:
    """Every import against the rule, as `path:line: message`, and every circle of imports."""
    problems = []
    edges = import_edges(modules)
    for edge in edges:
        where = f"{edge.path}:{edge.line}"
        source_room, target_room = room_of(edge.source), room_of(edge.target)
        if not source_room or not target_room:
            problems.append(f"{where}: {edge.source} or {edge.target} is in no room of ROOMS")
            continue
        if edge.function and not _lazy_allowed(edge):
            problems.append(f"{where}: {edge.source} imports {edge.target} inside {edge.function}(); import it at "
                            "the top of the module (an import hidden in a function hides a circle or an upward "
                            "import)")
        if source_room == target_room:
            continue
        allowed = ONLY.get(source_room)
        if allowed is not None and not any(target_room == a or target_room.startswith(a + ".") for a in allowed):
            problems.append(f"{where}: {edge.source} imports {edge.target}; {source_room} may import only "
                            f"{', '.join(allowed) or 'nothing of dsaml'}")
        elif level_of(target_room) > level_of(source_room):
            problems.append(f"{where}: {edge.source} imports {edge.target}, a room above its own "
                            f"({target_room} over {source_room})")
    problems += [f"import circle: {' -> '.join(cycle)}" for cycle in import_cycles(edges)]
    return problems


def import_cycles(edges: Iterable[Edge]) -> list[list[str]]:
    """The circles of the import graph, one per strongly connected group (Tarjan), each as a closed path."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                group.append(item)
                if item == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(group, graph) for group in groups]


def _closed_path(group: list[str], graph: Mapping[str, set[str]]) -> list[str]:
    """A path through the group back to its first member (shortest, by breadth-first search)."""
    start, members = group[0], set(group)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target not in previous:
                    previous[target] = node
                    nxt.append(target)
        frontier = nxt
    return group


def size_problems(modules: Mapping[str, Module]) -> list[str]:
    problems = []
    for module in modules.values():
        text = module.path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > MAX_FILE_LINES:
            problems.append(f"{module.path}: {lines} lines (at most {MAX_FILE_LINES}); split it by job")
        for qualified, node in _functions(ast.parse(text)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES and (module.name, qualified) not in LONG_FUNCTIONS_ALLOWED:
                problems.append(f"{module.path}:{node.lineno}: {qualified}() has {length} lines (at most "
                                f"{MAX_FUNCTION_LINES}); give its steps names")
    return problems


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            qualified = f"{prefix}{node.name}"
            if not isinstance(node, ast.ClassDef):
                yield qualified, node
            yield from _functions(node, qualified + ".")
