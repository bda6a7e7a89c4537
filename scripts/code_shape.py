"""Measure the shape targets of issue 20 over the package and print a table.

Targets (exit status 1 when one is missed):

- functions longer than 80 lines: none, except those whose docstring's first line carries a reason
  marker ``(long: <reason>)``, at most 6 of those in the package;
- functions with more than 8 parameters (``self``/``cls`` not counted; ``*args``/``**kwargs`` count
  one each): none;
- Processing parameter names spelled as string literals outside their declaration: none. A *name*
  is an uppercase identifier (``INPUT``, ``OUTPUT_REPORT``) that the package declares as a parameter
  or output: the first argument of a ``QgsProcessingParameter*``/``QgsProcessingOutput*`` call or of
  one of the package's parameter factories (:data:`FACTORIES`), the value of a class-level constant in
  ``processing/`` (``INPUT = "INPUT"``), or an uppercase string in ``jobs.py``. A *literal outside its
  declaration* is such a string written inside a function body of ``processing/`` or ``gui/``
  (docstrings and f-string text are not literals; class-level constant assignments and ``jobs.py``
  are declarations). :data:`ALLOWED` lists uppercase strings that coincide with a parameter name but
  are used for something else;
- mypy over the whole package (configuration in pyproject.toml): no error.

Usage: ``python scripts/code_shape.py [--no-mypy] [--json]`` from the repository root.
"""

from __future__ import annotations

import argparse
import ast
import json
import pathlib
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deformation_forecast"
MAX_LINES = 80
MAX_PARAMS = 8
MAX_LONG_WITH_REASON = 6
REASON = re.compile(r"\(long: [^)]+\)")
NAME = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$")
LITERAL_DIRS = ("processing", "gui")
# calls whose first argument declares a parameter or output name (besides QgsProcessingParameter*/Output*)
FACTORIES = frozenset({"metres_parameter", "table_sink", "plot_destination"})
# uppercase strings equal to a parameter name but meaning something else where they are written
ALLOWED: frozenset[str] = frozenset()
SKIP_FILES = ("resources_rc.py",)


@dataclass
class Shape:
    long: list[tuple[str, int]] = field(default_factory=list)  # (where, lines)
    long_with_reason: list[tuple[str, int]] = field(default_factory=list)
    many_params: list[tuple[str, int]] = field(default_factory=list)  # (where, parameters)
    literals: list[tuple[str, str]] = field(default_factory=list)  # (where, name)
    mypy_errors: dict[str, int] | None = None  # per directory; None when not run

    def missed(self) -> list[str]:
        out = []
        if self.long:
            out.append(f"{len(self.long)} function(s) over {MAX_LINES} lines without a reason")
        if len(self.long_with_reason) > MAX_LONG_WITH_REASON:
            out.append(
                f"{len(self.long_with_reason)} long functions with a reason (at most {MAX_LONG_WITH_REASON})"
            )
        if self.many_params:
            out.append(f"{len(self.many_params)} function(s) with more than {MAX_PARAMS} parameters")
        if self.literals:
            out.append(f"{len(self.literals)} parameter name literal(s) outside their declaration")
        if self.mypy_errors:
            out.append(f"{sum(self.mypy_errors.values())} mypy error(s)")
        return out


def package_files(package: pathlib.Path = PACKAGE) -> list[pathlib.Path]:
    return sorted(p for p in package.rglob("*.py") if p.name not in SKIP_FILES)


def parameter_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = fn.args
    names = [x.arg for x in (*a.posonlyargs, *a.args)]
    n = len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return n - 1 if names and names[0] in ("self", "cls") else n


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _rel(path: pathlib.Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def _is_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value):
        return node.value
    return None


def _declares(call_name: str) -> bool:
    return call_name.startswith(("QgsProcessingParameter", "QgsProcessingOutput")) or call_name in FACTORIES


def declared_names(trees: dict[pathlib.Path, ast.Module], package: pathlib.Path = PACKAGE) -> set[str]:
    """Every parameter or output name the package declares (see the module docstring)."""
    names: set[str] = set()
    for path, tree in trees.items():
        rel = path.relative_to(package).parts
        if rel == ("jobs.py",):
            names |= {v for n in ast.walk(tree) if (v := _is_name(n))}
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.args and _declares(_call_name(node)):
                names |= {v} if (v := _is_name(node.args[0])) else set()
            if rel[0] == "processing" and isinstance(node, ast.ClassDef):
                for stmt in node.body:  # INPUT = "INPUT", A, B = "A", "B", X: str = "X"
                    value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
                    values = value.elts if isinstance(value, ast.Tuple) else [value] if value else []
                    names |= {v for e in values if (v := _is_name(e))}
    return names


def _docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def literal_names(path: pathlib.Path, tree: ast.Module, names: set[str]) -> list[tuple[str, str]]:
    """Parameter names written as literals inside the function bodies of `tree`."""
    skip = _docstring_nodes(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values}
    inside: dict[int, tuple[ast.Constant, str]] = {}  # literal -> (node, innermost function)
    for fn in _functions(tree):  # outer functions first: an inner one overrides
        for stmt in fn.body:
            for node in ast.walk(stmt):
                if isinstance(node, ast.Constant):
                    inside[id(node)] = (node, fn.name)
    found = []
    for key, (node, fn_name) in inside.items():
        v = _is_name(node)
        if v and v in names and v not in ALLOWED and key not in skip:
            found.append((f"{_rel(path)}:{node.lineno} {fn_name}", v))
    return sorted(found)


def measure_ast(package: pathlib.Path = PACKAGE) -> Shape:
    trees = {p: ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in package_files(package)}
    shape = Shape()
    for path, tree in trees.items():
        for fn in _functions(tree):
            where = f"{_rel(path)}:{fn.lineno} {fn.name}"
            lines = (fn.end_lineno or fn.lineno) - fn.lineno + 1
            if lines > MAX_LINES:
                doc = (ast.get_docstring(fn) or "").splitlines()
                (shape.long_with_reason if doc and REASON.search(doc[0]) else shape.long).append(
                    (where, lines)
                )
            if (n := parameter_count(fn)) > MAX_PARAMS:
                shape.many_params.append((where, n))
    for items in (shape.long, shape.long_with_reason, shape.many_params):
        items.sort(key=lambda t: (-t[1], t[0]))
    names = declared_names(trees, package)
    for path, tree in trees.items():
        if path.relative_to(package).parts[0] in LITERAL_DIRS:
            shape.literals += literal_names(path, tree, names)
    return shape


def mypy_errors(package: pathlib.Path = PACKAGE) -> dict[str, int]:
    """mypy over the whole package with pyproject's configuration: errors per directory."""
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(package)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"mypy failed to run: {out.stderr.strip() or out.stdout.strip()}")
    per: dict[str, int] = {}
    for line in out.stdout.splitlines():
        m = re.match(r"^(\S+?\.py):\d+: error:", line)
        if m:
            parts = pathlib.Path(m.group(1)).parts
            key = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
            per[key] = per.get(key, 0) + 1
    return per


def table(shape: Shape) -> str:
    rows = [f"{'target':<58}{'found':>7}{'limit':>7}"]
    rows.append("-" * len(rows[0]))
    rows.append(f"{f'functions over {MAX_LINES} lines without a reason':<58}{len(shape.long):>7}{0:>7}")
    rows.append(
        f"{'functions over 80 lines with (long: reason)':<58}{len(shape.long_with_reason):>7}{MAX_LONG_WITH_REASON:>7}"
    )
    rows.append(f"{f'functions with more than {MAX_PARAMS} parameters':<58}{len(shape.many_params):>7}{0:>7}")
    rows.append(
        f"{'parameter names as literals outside their declaration':<58}{len(shape.literals):>7}{0:>7}"
    )
    if shape.mypy_errors is not None:
        rows.append(f"{'mypy errors (whole package)':<58}{sum(shape.mypy_errors.values()):>7}{0:>7}")
    detail = []
    for title, items in (
        ("long", shape.long),
        ("long (with a reason)", shape.long_with_reason),
        ("parameters", shape.many_params),
        ("literal", shape.literals),
    ):
        detail += [f"{title:<22}{where}  {what}" for where, what in items]
    if shape.mypy_errors:
        detail += [f"{'mypy':<22}{d}  {n}" for d, n in sorted(shape.mypy_errors.items())]
    return "\n".join(rows + ([""] + detail if detail else []))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-mypy", action="store_true", help="skip mypy (the AST targets only)")
    ap.add_argument("--json", action="store_true", help="print the measures as JSON")
    args = ap.parse_args(argv)
    shape = measure_ast()
    if not args.no_mypy:
        shape.mypy_errors = mypy_errors()
    print(json.dumps(asdict(shape), indent=1) if args.json else table(shape))
    missed = shape.missed()
    for m in missed:
        print(f"MISSED: {m}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
