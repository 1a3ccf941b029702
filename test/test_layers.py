"""The package's layers: every import points to the same layer or one below, never up.

The order is the one docs/architecture.md draws. A module may import modules of its own folder
and of any layer listed before its own; ``errors``, ``command`` (how a subcommand runs) and
``options`` (checked option types) are the foundation.
"""

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / 'monodepth_ros'
PACKAGE = 'monodepth_ros'

# Lowest first. Layers on one line do not import each other (front doors, side by side).
LAYERS = (
    ('errors',),
    ('command', 'options'),
    ('io',),
    ('model',),
    ('engines',),
    ('runtime',),
    ('synthetic',),
    ('evaluation',),
    ('training',),
    ('bagtools', 'ros'),
    ('fleet',),
    ('cli',),
)
RANK = {layer: rank for rank, names in enumerate(LAYERS) for layer in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def layer_of(module: str) -> str | None:
    """First component below the package; None for the package itself (its version)."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else None


def imported_modules(path: Path) -> set[str]:
    """Package modules imported by a file, with ``from pkg import sub`` resolved to ``pkg.sub``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                PACKAGE) and node.level == 0:
            for alias in node.names:
                candidate = PACKAGE_DIR.parent / (node.module.replace('.', '/') + '/' + alias.name)
                is_module = candidate.with_suffix('.py').is_file() or (
                    candidate / '__init__.py').is_file()
                found.add(f'{node.module}.{alias.name}' if is_module else node.module)
    return found


def package_files():
    return sorted(PACKAGE_DIR.rglob('*.py'))


def test_every_folder_and_top_level_module_has_a_layer():
    names = {path.relative_to(PACKAGE_DIR).parts[0].removesuffix('.py')
             for path in package_files()} - {'__init__'}
    assert names <= set(RANK), f'modules without a layer: {sorted(names - set(RANK))}'


@pytest.mark.parametrize('path', package_files(), ids=lambda p: str(p.relative_to(PACKAGE_DIR)))
def test_imports_point_down(path):
    module = module_name(path)
    own = layer_of(module)
    if own is None:
        return
    upward = []
    for target in imported_modules(path):
        layer = layer_of(target)
        if layer is None or layer == own:
            continue
        if RANK[layer] >= RANK[own]:
            upward.append(target)
    assert not upward, f'{module} ({own}) imports {sorted(upward)} from its own level or above'


def test_no_import_cycles_between_modules():
    graph = {module_name(path): {target for target in imported_modules(path)
                                 if target != module_name(path)}
             for path in package_files()}
    visiting, done = set(), set()

    def visit(module, trail):
        if module in done or module not in graph:
            return
        assert module not in visiting, 'import cycle: ' + ' -> '.join(trail + [module])
        visiting.add(module)
        for target in sorted(graph[module]):
            visit(target, trail + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_every_folder_is_a_package_that_setup_installs():
    from setuptools import find_packages

    installed = set(find_packages(str(PACKAGE_DIR.parent), include=[PACKAGE, PACKAGE + '.*']))
    folders = {module_name(path.parent / '__init__.py') for path in package_files()}
    assert folders <= installed, f'folders missing an __init__.py: {sorted(folders - installed)}'
