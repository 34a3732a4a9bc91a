"""Project checks that ruff cannot express; run by `make lint`.

1. Settings are read from the environment in one place, gptalk_site/settings.py:
   no other module of the site (chat/, gptalk_site/, manage.py) reads
   `os.environ` or calls `os.getenv`. Setting DJANGO_SETTINGS_MODULE before
   Django starts (manage.py, asgi.py) is the one write allowed. Tests and bench
   scripts build environments for child processes and are not checked.
2. Every source file (.py, .js, .mjs, .css, .html) is at most MAX_LINES lines, so
   that each stays within a reader's reach; vendored libraries are exempt.

Usage: python tools/check_layout.py   (exit status 1 and one line per problem)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 450
SOURCE_SUFFIXES = {".py", ".js", ".mjs", ".css", ".html"}
SKIP_DIRS = {".git", ".venv", "node_modules", "staticfiles", "__pycache__", ".pytest_cache", ".hypothesis"}
VENDORED = ROOT / "static" / "vendor"
SETTINGS = ROOT / "gptalk_site" / "settings.py"
SITE_CODE = [ROOT / "chat", ROOT / "gptalk_site", ROOT / "manage.py"]

# Files that were being reworked elsewhere when these checks arrived. Each entry
# must still be needed: the check fails once a file here passes, so that the
# entry is removed rather than forgotten.
PENDING_ENVIRON: set[str] = set()
PENDING_LONG: set[str] = set()


def source_files() -> list[Path]:
    found = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP_DIRS for part in rel.parts) or path.is_relative_to(VENDORED):
            continue
        if path.suffix in SOURCE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and _is_os(node.value)


def _is_os(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "os"


def _is_settings_module_default(call: ast.Call) -> bool:
    """`os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)`, Django's own bootstrap."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "setdefault"
        and _is_environ(func.value)
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == "DJANGO_SETTINGS_MODULE"
    )


def environ_reads(path: Path) -> list[int]:
    """Line numbers where `path` touches the environment other than to name its settings module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    allowed: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_settings_module_default(node):
            allowed.add(id(node.func.value))  # type: ignore[attr-defined]
    lines = []
    names = {"environ", "getenv", "getenvb"}
    for node in ast.walk(tree):
        reads = (
            (_is_environ(node) and id(node) not in allowed)
            or (isinstance(node, ast.Attribute) and node.attr in {"getenv", "getenvb"} and _is_os(node.value))
            or (isinstance(node, ast.ImportFrom) and node.module == "os" and any(a.name in names for a in node.names))
        )
        if reads:
            lines.append(node.lineno)  # type: ignore[attr-defined]
    return sorted(lines)


def site_python_files() -> list[Path]:
    files = []
    for entry in SITE_CODE:
        files.extend([entry] if entry.is_file() else sorted(entry.rglob("*.py")))
    return [f for f in files if f != SETTINGS and "__pycache__" not in f.parts]


def problems() -> list[str]:
    found = []
    for path in site_python_files():
        rel = path.relative_to(ROOT).as_posix()
        lines = environ_reads(path)
        if rel in PENDING_ENVIRON:
            if not lines:
                found.append(f"{rel}: reads no environment any more; remove it from PENDING_ENVIRON")
            continue
        found.extend(f"{rel}:{line}: reads the environment; read it in gptalk_site/settings.py" for line in lines)
    for path in source_files():
        rel = path.relative_to(ROOT).as_posix()
        with path.open("rb") as handle:
            count = sum(1 for _ in handle)
        if rel in PENDING_LONG:
            if count <= MAX_LINES:
                found.append(f"{rel}: {count} lines now; remove it from PENDING_LONG")
            continue
        if count > MAX_LINES:
            found.append(f"{rel}: {count} lines (at most {MAX_LINES}); split it by concern")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(line)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
