"""The package layering ARCHITECTURE.md describes, checked on the source: a package imports only
the packages below it, so the data flow stays one-directional (config -> stages -> artifacts)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from cluster.devcluster import REPO

# each glmix package (or top-level module) and what it may import, lowest first
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "stage_args": {"errors", "settings"},
    "io": {"errors", "settings"},
    "deploy": {"errors", "io"},
    "model": {"errors", "settings", "io"},
    "data": {"errors", "settings", "io", "model"},
    "glm": {"errors", "settings", "data"},
    "train": {"errors", "settings", "stage_args", "io", "model", "data", "glm"},
    "spark": {"errors", "settings", "stage_args", "io", "deploy", "model", "data", "glm", "train"},
    "flow": {"errors", "settings", "io", "spark"},
    "game": {"errors", "settings", "stage_args", "io", "deploy", "model", "data", "glm", "train", "spark", "flow"},
    "registry": {"errors", "settings", "io", "deploy", "model", "data", "glm", "spark", "game"},
    "serving": {"errors", "settings", "stage_args", "io", "model", "glm", "spark", "registry"},
    "api": {"errors", "settings", "io", "model", "glm", "spark", "flow", "game", "registry"},
    "cli": {"errors", "settings", "io", "deploy", "model", "data", "glm", "spark", "flow", "game", "registry",
            "serving"},
}
# the one exception: the class-archive maker runs the demo flow to record the classes it loads
EXCEPTIONS = {("glmix/spark/class_archive.py", "game")}


def glmix_imports(path: Path) -> set[str]:
    """The glmix packages a module imports (``glmix.io.storage`` -> ``io``); jobs/launcher as such."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module else \
            [a.name for a in node.names] if isinstance(node, ast.Import) else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "glmix" and len(parts) > 1:
                found.add(parts[1])
            elif parts[0] in ("jobs", "launcher", "bench"):
                found.add(parts[0])
    return found


def test_packages_import_only_the_layers_below_them() -> None:
    violations = []
    for path in sorted((REPO / "glmix").rglob("*.py")):
        relative = path.relative_to(REPO / "glmix")
        package = relative.parts[0] if len(relative.parts) > 1 else relative.stem
        if package == "__init__":
            continue
        assert package in ALLOWED, f"{relative}: a package ARCHITECTURE.md does not describe"
        for imported in glmix_imports(path) - {package}:
            if imported not in ALLOWED[package] and (str(path.relative_to(REPO)), imported) not in EXCEPTIONS:
                violations.append(f"glmix/{relative} imports {imported}")
    assert not violations, violations


def test_jobs_are_drivers_that_import_no_other_job() -> None:
    for path in sorted((REPO / "jobs").glob("*.py")):
        assert "jobs" not in glmix_imports(path) - {path.stem}, f"{path.name} imports another job"
        assert not {"launcher", "bench"} & glmix_imports(path), path.name


def test_readme_layout_lists_every_module() -> None:
    readme = (REPO / "README.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("## Versions")]
    rows = {line.split("|")[1].strip().strip("`"): line for line in layout.splitlines() if line.startswith("| `")}
    missing = []
    for path in sorted((REPO / "glmix").rglob("*.py")):
        if path.name == "__init__.py":
            continue
        folder = f"{path.parent.relative_to(REPO)}/"
        if f"`{path.stem}`" not in rows.get(folder, ""):
            missing.append(str(path.relative_to(REPO)))
    assert not missing, f"README's layout table misses {missing}"


def test_a_module_a_flow_runs_with_python_m_is_not_imported_by_its_package() -> None:
    """runpy executes such a module twice (imported by its package, then as ``__main__``) and warns in
    every node's and worker's log; the flow builder's ``python -m`` modules, found in its source."""
    source = (REPO / "glmix" / "game" / "flow_builder.py").read_text()
    modules = sorted(set(re.findall(r'(?:self\.python\(|module = )"(glmix\.[\w.]+)"', source)))
    assert {"glmix.train.fixed_effect", "glmix.game.select_best", "glmix.registry.gate"} <= set(modules)
    probe = "import importlib, sys; m = sys.argv[1]; importlib.import_module(m.rsplit('.', 1)[0]); print(m, m in sys.modules)"
    for module in modules:          # one interpreter per module: another package may import it
        out = subprocess.run([sys.executable, "-c", probe, module], capture_output=True, text=True, check=True,
                             cwd=REPO).stdout
        assert out.split() == [module, "False"], out
