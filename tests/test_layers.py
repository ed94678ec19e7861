"""The package's shape (docs/code-map.md): no import cycles, counting imports inside functions; no
private name imported from another module; no file over 450 lines; upward imports only those the
code map lists."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bmil", "callbacks")


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, known: set[str]) -> list[tuple[str, str, int]]:
    """(module imported, name imported from it or "", line) for every import of the tree, at any depth."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [(f"{base}.{alias.name}", alias.name) for alias in node.names]
        else:
            continue
        for target, imported in targets:
            module = target
            while module and module not in known:
                module = module.rpartition(".")[0]
            if module and module != name:
                out.append((module, "" if module == target else imported, node.lineno))
    return out


def _graph() -> dict[str, dict[str, int]]:
    modules = _modules()
    return {name: {m: line for m, _, line in _imports(path, name, set(modules))} for name, path in modules.items()}


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_even_through_imports_inside_functions():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle_closed_inside_a_function():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 9}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_no_private_name_is_imported_from_another_module():
    modules = _modules()
    private = [f"{path.relative_to(ROOT)}:{line} imports {imported} from {module}"
               for name, path in modules.items() for module, imported, line in _imports(path, name, set(modules))
               if imported.startswith("_") and not imported.startswith("__")]
    assert private == []


def test_no_file_is_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > 450}
    assert long == {}


# The layers, bottom up (docs/code-map.md); a module may import its own layer and those below.
LAYERS = [
    ("leaves", ("bmil.errors", "bmil.system", "bmil.files", "bmil.numerics", "bmil.plots", "bmil.models",
                "bmil.evaluation.statistics", "bmil.loading", "bmil.tuning.space", "bmil.tuning.storage", "bmil.cluster",
                "bmil.logger", "bmil.checkpoint", "bmil.configs", "bmil.examples")),
    ("domains", ("bmil.domains",)),
    ("evaluation", ("bmil.evaluation", "bmil.video")),
    ("demos", ("bmil.demos", "bmil.demo_formats", "bmil.traces")),
    ("run folder", ("bmil.runs.folder", "bmil.runs.record")),
    ("training", ("bmil.methods", "bmil.distributed", "callbacks", "bmil.preflight", "bmil.check_command", "bmil.evaluate_command",
                  "bmil.trainer", "bmil.lightning_cli", "bmil.export")),
    ("runs", ("bmil.runs",)),
    ("executors", ("bmil.executors",)),
    ("drivers", ("bmil.tuning", "bmil.studies")),
    ("commands", ("bmil.cli", "bmil")),
]
# Imports that run upward, each with its reason (docs/code-map.md lists them too): none.
UPWARD: set[tuple[str, str]] = set()


def _layer(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS and docs/code-map.md"
    return best[0]


def test_every_import_runs_down_the_layers_but_the_listed_ones():
    upward = sorted((a, b) for a, targets in _graph().items() for b in targets if _layer(b) > _layer(a))
    assert set(upward) == UPWARD, upward
