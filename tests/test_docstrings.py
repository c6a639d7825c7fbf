"""Every public callable carries a Google-style docstring (issue 8).

The scan reads the source with :mod:`ast` and imports nothing, so it runs without any
framework installed. A module is public when no component of its dotted path starts with
``_`` (``xpander_sync/__init__.py`` is the package ``xpander_sync`` and counts; ``_converter.py``
and ``frameworks/_tools.py`` do not). Inside a public module every class, function and method
whose name does not start with ``_`` needs:

* a docstring;
* an ``Args:`` section naming each parameter except ``self``/``cls`` (``*args``/``**kwargs``
  included). A class's ``__init__`` parameters may be documented in either the class docstring
  or ``__init__``'s own;
* a ``Returns:`` (or, for generators, ``Yields:``) section unless it returns ``None`` or is a
  property (a property's summary line describes its value);
* a ``Raises:`` section naming every exception class of the package (:mod:`xpander_sync.errors`,
  plus ``BootHookError``, ``StoreClosedError``, ...) that it raises directly.

``typing.overload`` stubs are exempt (the implementation carries the docstring), and so are
property setters/deleters (Sphinx shows the getter's docstring). Raises found only through
helpers are not traced; the docstrings name them by hand.
"""

from __future__ import annotations

import ast
import builtins
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Union

PACKAGE = Path(__file__).resolve().parent.parent / "xpander_sync"

FunctionNode = Union[ast.FunctionDef, ast.AsyncFunctionDef]

_BUILTIN_EXCEPTIONS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
}

# A Google-style section header alone on its line, e.g. "    Args:".
_SECTION = re.compile(r"^\s*([A-Z][A-Za-z ]*):\s*$")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def public_modules() -> List[Path]:
    """Source files of the modules whose dotted name has no ``_``-prefixed component."""
    paths = sorted(PACKAGE.rglob("*.py"))
    return [p for p in paths if not any(part.startswith("_") for part in _module_name(p).split("."))]


def error_names() -> Set[str]:
    """Names of the public exception classes the package defines.

    Everything in ``xpander_sync/errors.py``, plus any public class elsewhere in the package
    (``BootHookError``, ``StoreClosedError``) whose bases lead, by name, to one of those or to a
    builtin exception.
    """
    bases: Dict[str, Set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                bases.setdefault(node.name, set()).update(names)
    errors_tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    found = {node.name for node in errors_tree.body if isinstance(node, ast.ClassDef)}
    changed = True
    while changed:
        changed = False
        for name, parents in bases.items():
            if name in found or name.startswith("_"):
                continue
            if parents & found or any(p in _BUILTIN_EXCEPTIONS for p in parents):
                found.add(name)
                changed = True
    return found


def sections(doc: Optional[str]) -> Dict[str, List[str]]:
    """Map each section header of ``doc`` (``"Args"``, ``"Returns"``, ...) to its body lines."""
    found: Dict[str, List[str]] = {}
    current: Optional[str] = None
    for line in (doc or "").splitlines():
        match = _SECTION.match(line)
        if match:
            current = match.group(1)
            found.setdefault(current, [])
        elif current is not None:
            found[current].append(line)
    return found


def _documented_args(doc: Optional[str]) -> Set[str]:
    """Parameter names listed in the ``Args:`` section (``name:`` or ``name (type):``)."""
    names = set()
    for line in sections(doc).get("Args", []):
        match = re.match(r"^\s*(\*{0,2}\w+)\s*(\([^)]*\))?\s*:", line)
        if match:
            names.add(match.group(1).lstrip("*"))
    return names


def _decorator_names(func: FunctionNode) -> Set[str]:
    names = set()
    for deco in func.decorator_list:
        target = deco.func if isinstance(deco, ast.Call) else deco
        if isinstance(target, ast.Name):
            names.add(target.id)
        elif isinstance(target, ast.Attribute):
            names.add(target.attr)
    return names


def _params(func: FunctionNode, *, is_method: bool) -> List[str]:
    args = func.args
    positional = [a.arg for a in args.posonlyargs + args.args]
    if is_method and "staticmethod" not in _decorator_names(func) and positional:
        positional = positional[1:]  # self / cls
    names = positional + [a.arg for a in args.kwonlyargs]
    if args.vararg:
        names.append(args.vararg.arg)
    if args.kwarg:
        names.append(args.kwarg.arg)
    return names


def _own_nodes(func: FunctionNode) -> Iterator[ast.AST]:
    """Nodes of ``func``'s body, without descending into nested functions, classes or lambdas."""
    stack: List[ast.AST] = list(func.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                stack.append(child)


def _is_none(annotation: Optional[ast.expr]) -> bool:
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant):
        return annotation.value is None or annotation.value in ("None", "NoReturn")
    if isinstance(annotation, ast.Name):
        return annotation.id in ("None", "NoReturn")
    return False


def _returns_value(func: FunctionNode) -> bool:
    if func.returns is not None:
        return not _is_none(func.returns)
    for node in _own_nodes(func):
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                return True
    return False


def _raised_errors(func: FunctionNode, errors: Set[str]) -> Set[str]:
    raised = set()
    for node in _own_nodes(func):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            name = exc.id if isinstance(exc, ast.Name) else exc.attr if isinstance(exc, ast.Attribute) else None
            if name in errors:
                raised.add(name)
    return raised


def _check_function(
    func: FunctionNode, qualname: str, errors: Set[str], *, is_method: bool, class_doc: Optional[str] = None
) -> List[str]:
    decorators = _decorator_names(func)
    if "overload" in decorators or {"setter", "deleter"} & decorators:
        return []
    problems = []
    doc = ast.get_docstring(func)
    is_init = func.name == "__init__"
    if not doc and not is_init:
        return [f"{qualname}: no docstring"]
    params = _params(func, is_method=is_method)
    if params:
        documented = _documented_args(doc) | (_documented_args(class_doc) if is_init else set())
        missing = [p for p in params if p not in documented]
        if missing:
            where = "class or __init__ docstring" if is_init else "Args:"
            problems.append(f"{qualname}: {where} does not document {', '.join(missing)}")
    if is_init:
        return problems
    found = sections(doc)
    if _returns_value(func) and "property" not in decorators and not ({"Returns", "Yields"} & set(found)):
        problems.append(f"{qualname}: returns a value but has no Returns: section")
    raised = _raised_errors(func, errors)
    named = " ".join(found.get("Raises", []))
    unnamed = sorted(e for e in raised if not re.search(rf"\b{e}\b", named))
    if unnamed:
        problems.append(f"{qualname}: Raises: does not name {', '.join(unnamed)}")
    return problems


def _check_class(cls: ast.ClassDef, qualname: str, errors: Set[str]) -> List[str]:
    doc = ast.get_docstring(cls)
    problems = [] if doc else [f"{qualname}: no docstring"]
    problems += _check_body(cls.body, qualname, errors, in_class=cls)
    return problems


def _check_body(
    body: List[ast.stmt], prefix: str, errors: Set[str], in_class: Optional[ast.ClassDef] = None
) -> List[str]:
    problems: List[str] = []
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if node.name.startswith("_") and not (in_class is not None and node.name == "__init__"):
                continue
            class_doc = ast.get_docstring(in_class) if in_class is not None else None
            problems += _check_function(
                node, f"{prefix}.{node.name}", errors, is_method=in_class is not None, class_doc=class_doc
            )
        elif isinstance(node, ast.ClassDef):
            if not node.name.startswith("_"):
                problems += _check_class(node, f"{prefix}.{node.name}", errors)
        elif isinstance(node, (ast.If, ast.Try)) and in_class is None:
            # Module-level definitions under ``if TYPE_CHECKING:`` / ``try: ... except ImportError:``.
            nested = list(node.body) + list(node.orelse)
            if isinstance(node, ast.Try):
                nested += [stmt for handler in node.handlers for stmt in handler.body] + list(node.finalbody)
            problems += _check_body(nested, prefix, errors)
    return problems


def scan() -> List[str]:
    """Every docstring problem in the public modules, one line each."""
    errors = error_names()
    problems: List[str] = []
    for path in public_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        problems += _check_body(tree.body, _module_name(path), errors)
    return problems


def test_scan_covers_the_public_modules():
    names = {_module_name(p) for p in public_modules()}
    assert {"xpander_sync", "xpander_sync.backend", "xpander_sync.cli", "xpander_sync.frameworks.agno"} <= names
    assert not any(part.startswith("_") for name in names for part in name.split("."))


def test_public_callables_have_google_docstrings():
    problems = scan()
    assert not problems, "docstring problems (issue 8):\n" + "\n".join(problems)


_SAMPLE = '''
class Good:
    """A class whose constructor arguments are documented here.

    Args:
        size: how big.
    """

    def __init__(self, size):
        self.size = size

    @property
    def area(self):
        """The area (a property describes its value in the summary)."""
        return self.size ** 2

    def grow(self, by, *extra, **options):
        """Grow.

        Args:
            by (int): how much.
            *extra: more amounts.
            **options: ignored.

        Returns:
            The new size.

        Raises:
            InvalidInputError: ``by`` is negative.
        """
        if by < 0:
            raise InvalidInputError("by")
        return self.size + by


class Bad:
    def __init__(self, size):
        """Build it."""

    def shrink(self, by):
        """Shrink, without saying how, what comes back, or what is raised."""
        if by < 0:
            raise errors.InvalidInputError("by")
        return by

    def _private(self, anything):
        return anything
'''


def test_scan_reports_each_kind_of_problem():
    problems = _check_body(ast.parse(_SAMPLE).body, "m", {"InvalidInputError"})
    assert problems == [
        "m.Bad: no docstring",
        "m.Bad.__init__: class or __init__ docstring does not document size",
        "m.Bad.shrink: Args: does not document by",
        "m.Bad.shrink: returns a value but has no Returns: section",
        "m.Bad.shrink: Raises: does not name InvalidInputError",
    ]
