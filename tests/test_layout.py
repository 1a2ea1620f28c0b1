"""The package's layout: one file name per module, floors that import only downwards, no import cycle."""

import ast
import collections
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "recordings_service"

# Top floor first; a module may import from its own floor or the ones below, never from one above.
FLOORS = [
    {"recordings_service", "cli"},  # the app and its commands
    {"web"},
    {"recordings", "work", "devtools"},
    {"integrations", "persistence"},
    {"errors", "exceptions", "extensions", "fields", "logs", "openfiles", "schemas"},
    {"domain"},
]


def module_name(path: Path) -> str:
    """The dotted name of a file of the package."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports (anywhere in its body)."""
    files = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    above = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*above, *filter(None, [node.module])])
                # ``from . import x`` imports the module x; ``from .x import y`` imports x.
                imported.update(
                    f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names
                )
        graph[name] = {other for other in imported if other in files and other != name}
    return graph


def floor(module: str) -> int:
    """The floor a module is on, 0 the top."""
    part = module.split(".")[1] if "." in module else module
    return next(number for number, parts in enumerate(FLOORS) if part in parts)


def test_no_two_modules_share_a_file_name():
    names = collections.Counter(path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_every_folder_and_module_of_the_package_is_on_a_floor():
    parts = {module.split(".")[1] if "." in module else module for module in imports()}
    assert parts - set().union(*FLOORS) == set()


def test_no_module_imports_from_a_floor_above_its_own():
    upwards = [
        (module, other)
        for module, others in imports().items()
        for other in others
        if floor(other) < floor(module)
    ]
    assert upwards == []


def test_no_import_cycle():
    graph = imports()
    finished, cycles = set(), []

    def visit(module, path):
        if module in path:
            cycles.append([*path[path.index(module) :], module])
        elif module not in finished:
            for other in sorted(graph[module]):
                visit(other, [*path, module])
            finished.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []
