"""The architecture as the layout promises it: harness never imports reproductions, no import cycle
inside harness, the registries and params.yaml in step, recipes picklable for any executor."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest
import yaml

from harness.papers import papers
from harness.recipes import SCALES

ROOT = Path(__file__).resolve().parent.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions, as absolute dotted names."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return found


def _harness_graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in (ROOT / "harness").rglob("*.py")}
    return {name: {m for m in _imports(path) if m in files and m != name} for name, path in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_harness_never_imports_reproductions():
    offenders = {_module_name(p): sorted(m for m in _imports(p) if m.split(".")[0] == "reproductions")
                 for p in (ROOT / "harness").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}


def test_no_import_cycle_inside_harness():
    assert _cycles(_harness_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_params_yaml_lists_exactly_the_registered_papers():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    registered = set(papers())
    assert set(params["reproduce"]["papers"]) == registered
    for tag, per_paper in params["budgets"].items():
        assert set(per_paper) <= registered, f"budgets.{tag} names a paper that is not registered"


@pytest.mark.parametrize("paper", list(papers()))
@pytest.mark.parametrize("scale", SCALES)
def test_every_paper_recipe_validates_and_pickles_at_every_scale(paper, scale):
    """Any recipe can go to a worker process (plain pickle) or a Ray worker as it is."""
    recipe = papers()[paper].recipe(scale)
    recipe.validate()
    assert recipe.paper == paper and recipe.scale == scale
    clone = pickle.loads(pickle.dumps(recipe))
    assert clone == recipe


_KEYS_SCRIPT = """
import json
from harness.experiments.jobs import Job, _recipe_spec, run_key
from harness.papers import papers
from harness.recipes import SCALES
out = {}
for pid, module in papers().items():
    for scale in SCALES:
        recipe = module.recipe(scale)
        for arm in recipe.arms:
            out[f"{pid}/{scale}/{arm.name}"] = _recipe_spec(recipe, arm.name)
            if scale == "smoke":
                out[f"{pid}/{scale}/{arm.name}/key"] = run_key(Job(recipe, arm.name, 0, "x", "datasets"))
print(json.dumps(out, sort_keys=True))
"""


def test_run_keys_are_the_same_in_every_process():
    """A key that differed between processes (a memory address in a repr) would make reuse and resume
    impossible; every recipe of every paper at every scale, and the smoke runs' full keys, in two processes."""
    import json
    import subprocess
    import sys

    runs = [subprocess.run([sys.executable, "-c", _KEYS_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                           timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr[-2000:]
    first, second = (json.loads(r.stdout) for r in runs)
    assert first == second
    assert not [k for k, v in first.items() if " at 0x" in json.dumps(v)]


_IMPORTED_SCRIPT = """
import sys
from harness.cli import main
code = main(["-q", "--data-root", sys.argv[1], "reproduce", "gupta2015_fixed_point", "--scale", "smoke",
             "--no-track", "--out", sys.argv[2]])
print("\\n".join(sorted({m.__file__ for m in list(sys.modules.values()) if getattr(m, "__file__", None)})))
sys.exit(code)
"""


def test_the_reproduce_stage_depends_on_every_project_file_it_imports(tmp_path):
    """dvc.yaml lists a training stage's dependencies by hand; every harness or kernels file a reproduction
    imports must be among them, or a change to it would not rerun the stage."""
    import subprocess
    import sys

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["reproduce"]["do"]
    deps = [d for d in stage["deps"] if d.startswith(("harness", "kernels"))]
    out = subprocess.run([sys.executable, "-c", _IMPORTED_SCRIPT, str(ROOT / "datasets"), str(tmp_path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    files = [Path(f).resolve() for f in out.stdout.split()]
    imported = {f.relative_to(ROOT).as_posix() for f in files
                if f.is_relative_to(ROOT / "harness") or f.is_relative_to(ROOT / "kernels")}
    missing = sorted(f for f in imported if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert not missing, f"add to dvc.yaml's reproduce deps: {missing}"
