"""The shape of the package, checked: no import cycles, packages meet through their public faces,
small modules, a run that never loads the evaluator lab, and tests that import what users import.

The import graph is read from the source (every `import`, at module level or inside a function,
since a lazy import closes a cycle as surely as an eager one, only later), plus the names a
package's `__init__` exports lazily (`_LAZY`).
"""

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folder -> the package it installs as (pyproject's package-dir).
FOLDERS = {
    "modelbench": "modelbench",
    "hazards": "modelbench.hazards",
    "prompts": "modelbench.prompts",
    "suts": "modelbench.suts",
    "graders": "modelbench.graders",
    "reports": "modelbench.reports",
}
MAX_LINES = 500
# The evaluator lab is loaded only by the commands that run it.
LAB = "modelbench.graders.lab"
LAB_USERS = {"modelbench.cli.grader_tools"}


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def modules() -> dict[str, Module]:
    found = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if folder == "modelbench" and parts[0] in FOLDERS:
                continue  # a stray copy; the folders above are the real ones
            is_package = parts[-1] == "__init__"
            name = ".".join([package, *parts[:-1]] if is_package else [package, *parts])
            found[name] = Module(name, path, is_package)
    return found


def _lazy_exports(tree: ast.Module) -> list[str]:
    """Module names in a package's `_LAZY = {"name": "module", ...}` table."""
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets):
                if isinstance(node.value, ast.Dict):
                    return [v.value for v in node.value.values if isinstance(v, ast.Constant)]
    return []


def imports(module: Module, known: dict[str, Module]) -> list[tuple[str, int]]:
    """(imported module, line) for every import of one of our modules, at any depth."""
    tree = ast.parse(module.path.read_text("utf-8"))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    out: list[tuple[str, int]] = []

    def add(name: str, line: int) -> None:
        # `from a.b import c` imports a.b, and a.b.c too when c is a module.
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name and name != module.name:
            out.append((name, line))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                full = f"{source}.{alias.name}"
                add(full if full in known else source, node.lineno)
    if module.is_package:
        out += [(name, 0) for name in _lazy_exports(tree) if name in known]
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {target for target, _ in imports(m, known)} for name, m in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_of(name: str, known: dict[str, Module]) -> str:
    """The package whose public face a module belongs behind: its innermost package below the
    root. The root's own modules (errors, store, engine, ...) are each their own face."""
    parts = name.split(".")
    for end in range(len(parts), 1, -1):
        candidate = ".".join(parts[:end])
        if candidate in known and known[candidate].is_package and candidate != "modelbench":
            return candidate
    return name


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(graph())
    assert found == [], "import cycles (each a set of modules that import each other): " + "; ".join(
        " <-> ".join(c) for c in found
    )


def test_packages_import_each_other_through_their_public_faces():
    known = modules()
    deep = []
    for name, module in known.items():
        home = package_of(name, known)
        for target, line in imports(module, known):
            face = package_of(target, known)
            inside = face == home or face.startswith(home + ".") or home.startswith(face + ".")
            if target != face and not inside:
                deep.append(f"{module.path.relative_to(ROOT)}:{line} imports {target} (use {face})")
    assert deep == [], "\n".join(deep)


def test_no_module_is_over_500_lines():
    long = {
        str(m.path.relative_to(ROOT)): n
        for m in modules().values()
        if (n := len(m.path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


def test_only_the_lab_commands_import_the_lab():
    known = modules()
    users = {
        name
        for name, module in known.items()
        if not name.startswith(LAB) and any(target.startswith(LAB) for target, _ in imports(module, known))
    }
    assert users <= LAB_USERS, f"the runtime imports the evaluator lab: {sorted(users - LAB_USERS)}"


def test_a_run_loads_no_lab_module(tmp_path):
    """A whole run, in a fresh interpreter: CLI, engine, store, scoring, report."""
    script = textwrap.dedent(
        f"""
        import json, sys
        from click.testing import CliRunner
        from modelbench.cli import main
        from modelbench.testing.mock_server import MockServer, ServerState
        with MockServer(ServerState(record_requests=False)) as server:
            result = CliRunner().invoke(main, ["run", "--sut", f"openai-compat:m@{{server.url}}",
                "--graders", "refusal", "--max-items", "12", "--run-dir", {str(tmp_path)!r}])
        loaded = sorted(m for m in sys.modules if m.startswith("modelbench."))
        print(json.dumps({{"exit": result.exit_code, "output": result.output, "loaded": loaded}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["exit"] == 0, report["output"]
    assert "modelbench.scoring.grades" in report["loaded"]  # the run did score
    assert [m for m in report["loaded"] if m.startswith(LAB)] == []


@pytest.mark.parametrize("package", sorted(name for name, m in modules().items() if m.is_package))
def test_every_public_name_resolves(package):
    import importlib

    module = importlib.import_module(package)
    for name in getattr(module, "__all__", []):
        assert getattr(module, name) is not None, f"{package}.{name}"


def test_every_package_is_installed():
    """pyproject lists packages by hand (the folders map onto `modelbench.*`): a new subpackage
    that is not listed works in a checkout and is missing from a built wheel."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["tool"]["setuptools"]["packages"]
    )
    found = {name for name, m in modules().items() if m.is_package}
    assert found == listed


# The ground floor (`modelbench.core`): the data every part passes around. Its names are re-exported
# by the packages above for users' code, but no module of ours takes a core type from upstairs.
CORE = "modelbench.core"
FLOOR_ALLOWED = {CORE, "modelbench.errors", "modelbench.hashing"}


def core_names() -> set[str]:
    tree = ast.parse((ROOT / "modelbench" / "core.py").read_text("utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def test_the_ground_floor_imports_nothing_of_ours_above_it():
    known = modules()
    above = {t for t, _ in imports(known[CORE], known)} - FLOOR_ALLOWED
    assert above == set()


def test_no_module_takes_a_core_type_from_a_higher_floor():
    names = core_names()
    assert {"TestItem", "SUTResponse", "Verdict", "Exchange", "GRADABLE_OUTCOMES"} <= names
    upstairs = []
    for module in modules().values():
        tree = ast.parse(module.path.read_text("utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("modelbench")
            ):
                taken = sorted({a.name for a in node.names} & names)
                if taken and node.module != CORE:
                    upstairs.append(
                        f"{module.path.relative_to(ROOT)}:{node.lineno} takes {taken} from {node.module}"
                    )
    assert upstairs == [], "\n".join(upstairs)


def test_importing_the_scoring_loads_no_grader_sut_or_prompt_module():
    """The scoring is arithmetic on verdicts and outcomes: in a fresh interpreter, importing it must
    not load an evaluator, a model adapter or the prompt sets."""
    script = "import json, sys, modelbench.scoring; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout)
    upstairs = [m for m in loaded if m.split(".")[:2] in (["modelbench", "graders"], ["modelbench", "suts"])]
    upstairs += [m for m in loaded if m.split(".")[:2] == ["modelbench", "prompts"]]
    assert upstairs == []


# Tests import what users import: a package's public face, not its inner modules. `tests/test_X.py`
# may import the module X it is named after (it tests that module's own rules).
MAX_INNER_TEST_IMPORTS = 40


def inner_module_imports(path: Path, known: dict[str, Module]) -> list[str]:
    """`file:line module` for each import statement in a test file that reaches an inner module
    (one that is not a package's `__init__`), other than the module the file is named after."""
    tree = ast.parse(path.read_text("utf-8"))
    found: list[tuple[int, str]] = []

    def resolve(name: str) -> str:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            reached = {resolve(alias.name) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            source = resolve(node.module)
            reached = {source}
            if source and known[source].is_package:
                reached |= {f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in known}
        else:
            continue
        inner = sorted(
            name
            for name in reached
            if name and not known[name].is_package and path.name != f"test_{name.rpartition('.')[2]}.py"
        )
        if inner:
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
            found.append((node.lineno, f"{shown}:{node.lineno} {', '.join(inner)}"))
    return [line for _, line in sorted(found)]


def test_the_counter_counts_imports_of_inner_modules(tmp_path):
    test_file = tmp_path / "test_store.py"
    test_file.write_text(
        textwrap.dedent(
            """
            import modelbench.engine
            from modelbench import UserError, store
            from modelbench.errors import UserError
            from modelbench.store import Store
            from modelbench.suts import SUT, compress
            from modelbench.graders import lab


            def test_x():
                from modelbench.scoring.grades import grade
            """
        ),
        "utf-8",
    )
    assert inner_module_imports(test_file, modules()) == [
        "test_store.py:2 modelbench.engine",
        "test_store.py:4 modelbench.errors",
        "test_store.py:6 modelbench.suts.compress",
        "test_store.py:11 modelbench.scoring.grades",
    ]


def test_tests_import_what_users_import():
    known = modules()
    inner = [
        line for path in sorted((ROOT / "tests").glob("*.py")) for line in inner_module_imports(path, known)
    ]
    assert len(inner) < MAX_INNER_TEST_IMPORTS, (
        f"{len(inner)} test imports of inner modules (at most {MAX_INNER_TEST_IMPORTS - 1}; import from "
        "the package's public face instead):\n" + "\n".join(inner)
    )


def _public_names(module: Module) -> set[str]:
    """The names a package's `__init__` exports: its `__all__` and its `_LAZY` table."""
    names: set[str] = set()
    for node in ast.parse(module.path.read_text("utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List | ast.Tuple | ast.Dict):
            targets = {t.id for t in node.targets if isinstance(t, ast.Name)}
            values = node.value.keys if isinstance(node.value, ast.Dict) else node.value.elts
            if targets & {"__all__", "_LAZY"}:
                names |= {v.value for v in values if isinstance(v, ast.Constant)}
    return names


def test_no_public_name_is_also_a_submodule():
    """A package that exports `x` and has a module `x` gives `package.x` two meanings: once the module
    is imported it replaces a lazy name, and an eager name hides the module from
    `monkeypatch.setattr("package.x.NAME", ...)`."""
    known = modules()
    both = [
        f"{name}.{public}"
        for name, module in known.items()
        if module.is_package
        for public in sorted(_public_names(module))
        if f"{name}.{public}" in known
    ]
    assert both == []


def test_importing_modelbench_loads_nothing_else():
    """The root's public API is all lazy: `import modelbench` costs nothing."""
    script = "import json, sys, modelbench; print(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout)
    assert [m for m in loaded if m.startswith("modelbench")] == [
        "modelbench",
        "modelbench.lazy",
        "modelbench.version",
    ]
    assert "pydantic" not in loaded
