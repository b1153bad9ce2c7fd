"""The Swift of apps/ parses, and the iOS core keeps its rules.

There is no Swift compiler on Linux CI's Python machine, so this is the check that runs with the README's test
command: every `.swift` file under apps/ must parse under the tree-sitter Swift grammar with no ERROR or MISSING
node; the library and app code (apps/ios/Sources, apps/ios/App) may not crash on bundle data (`try!`, `as!`, a
postfix `!` force unwrap); no `try` sits right of an operator (a compile error tree-sitter accepts); EdgediffKit
imports Foundation only, so it builds on Linux. The macOS workflow
(.github/workflows/ios.yml) compiles and tests the same files for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter_swift
from tree_sitter import Language, Node, Parser

ROOT = Path(__file__).resolve().parents[1]
APPS = ROOT / "apps"
IOS = APPS / "ios"
KIT = IOS / "Sources" / "EdgediffKit"
NO_CRASH_DIRS = (IOS / "Sources", IOS / "App")
SWIFT_FILES = sorted(APPS.rglob("*.swift"))


def _parser() -> Parser:
    return Parser(Language(tree_sitter_swift.language()))


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _where(path: Path, node: Node, source: bytes) -> str:
    line, col = node.start_point
    text = source[node.start_byte:node.end_byte].decode("utf-8", "replace").splitlines()
    snippet = (text[0] if text else "")[:60]
    return f"{path.relative_to(ROOT)}:{line + 1}:{col + 1}: {node.type} {snippet!r}"


def parse_problems(path: Path, source: bytes) -> list[str]:
    """Every ERROR and MISSING node of the file's syntax tree, as file:line:column: node 'text'."""
    tree = _parser().parse(source)
    if not tree.root_node.has_error:
        return []
    found = []
    for node in _walk(tree.root_node):
        if node.type == "ERROR":
            found.append(_where(path, node, source))
        elif node.is_missing:
            found.append(_where(path, node, source).replace(f": {node.type} ", f": MISSING {node.type} ", 1))
    return found or [f"{path.relative_to(ROOT)}: the tree has an error the grammar did not locate"]


def crash_sites(path: Path, source: bytes) -> list[str]:
    """`try!`, `as!` and postfix `!` force unwraps: each one crashes the app on a bad bundle instead of saying why."""
    tree = _parser().parse(source)
    found = []
    for node in _walk(tree.root_node):
        if node.type == "try_operator" and source[node.start_byte:node.end_byte].replace(b" ", b"") == b"try!":
            found.append(_where(path, node, source) + " (use try and a typed error)")
        elif node.type == "as_operator" and source[node.start_byte:node.end_byte] == b"as!":
            found.append(_where(path, node, source) + " (use as? and a typed error)")
        elif node.type == "postfix_expression" and node.children and node.children[-1].type == "bang":
            found.append(_where(path, node, source) + " (force unwrap: use guard let and a typed error)")
    return found


OPERATOR_NODES = {
    "ternary_expression", "nil_coalescing_expression", "additive_expression", "multiplicative_expression",
    "comparison_expression", "equality_expression", "conjunction_expression", "disjunction_expression",
    "infix_expression", "range_expression", "bitwise_operation",
}


def misplaced_try(path: Path, source: bytes) -> list[str]:
    """`try` right of a binary or ternary operator (`c ? try f() : nil`): the compiler refuses it, and nothing else
    here would notice before the macOS workflow does. Put `try` at the start of the whole expression instead."""
    tree = _parser().parse(source)
    found = []
    for node in _walk(tree.root_node):
        parent = node.parent
        if node.type == "try_expression" and parent is not None and parent.type in OPERATOR_NODES:
            if parent.children and parent.children[0] != node:
                found.append(_where(path, node, source) + f" (right of an operator in {parent.type})")
    return found


def imports(source: bytes) -> list[str]:
    tree = _parser().parse(source)
    names = []
    for node in _walk(tree.root_node):
        if node.type == "import_declaration":
            ident = next((c for c in node.children if c.type == "identifier"), None)
            if ident is not None:
                names.append(source[ident.start_byte:ident.end_byte].decode())
    return names


def test_the_apps_have_swift_files():
    assert (IOS / "Package.swift").is_file(), "apps/ios/Package.swift is missing"
    assert any(p.is_relative_to(KIT) for p in SWIFT_FILES), "no Swift under apps/ios/Sources/EdgediffKit"


@pytest.mark.parametrize("path", SWIFT_FILES, ids=[str(p.relative_to(APPS)) for p in SWIFT_FILES])
def test_swift_file_parses(path: Path):
    problems = parse_problems(path, path.read_bytes())
    assert not problems, "tree-sitter-swift finds syntax errors:\n" + "\n".join(problems)


def test_no_crash_on_bundle_data():
    found = []
    for path in SWIFT_FILES:
        if any(path.is_relative_to(d) for d in NO_CRASH_DIRS):
            found += crash_sites(path, path.read_bytes())
    assert not found, "code that crashes instead of reporting an error:\n" + "\n".join(found)


def test_no_try_right_of_an_operator():
    found = []
    for path in SWIFT_FILES:
        found += misplaced_try(path, path.read_bytes())
    assert not found, "'try' cannot appear to the right of a non-assignment operator:\n" + "\n".join(found)


def test_edgediffkit_imports_foundation_only():
    found = []
    for path in SWIFT_FILES:
        if path.is_relative_to(KIT):
            found += [f"{path.relative_to(ROOT)}: import {name}" for name in imports(path.read_bytes()) if name != "Foundation"]
    assert not found, "EdgediffKit must build on Linux with Foundation only:\n" + "\n".join(found)


def test_the_checks_catch_what_they_look_for(tmp_path: Path):
    """The checks above fail on real mistakes (so a grammar upgrade cannot silently turn them off)."""
    bad = b"import Foundation\nimport UIKit\nstruct S {\n  let v = [1, 2,, 3]\n}\nlet a = b!.c\nlet d = try! f()\nlet e = x as! Int\n"
    path = KIT / "Example.swift"  # never written: the checks take the bytes
    problems = parse_problems(path, bad)
    assert problems and ":4:" in problems[0], problems
    sites = crash_sites(path, bad)
    assert [s.split(": ")[1].split()[0] for s in sites] == ["postfix_expression", "try_operator", "as_operator"], sites
    assert imports(bad) == ["Foundation", "UIKit"]
    assert len(misplaced_try(path, b"let a = c ? try f() : nil\nlet b = x ?? try g()\n")) == 2
    fine = b"let ok = a != b && !c\nif let v = d?.e { print(v) }\nlet t = try c ? f() : nil\nh(try g())\n"
    assert not parse_problems(path, fine) and not crash_sites(path, fine) and not misplaced_try(path, fine)
