"""User-facing messages carry values, not `{placeholders}`: a string literal with a `{name}` field
that is not an f-string, passed to an exception or a log call, prints the braces literally (the
missing `f` of `"... resume={run_dir}"`, often the second half of an implicit concatenation
`f"... {a}; " "... {b}"`, whose second part is a plain string).

The scan reads the source of every argument of such calls token by token, so it sees each piece
of an implicit concatenation with its own prefix. Legitimate braces: f-strings, templates that go
through `.format(...)`, Hydra interpolations `${...}`, and what `ALLOWED` lists with its reason.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "recdistill"

#: Calls whose arguments reach the user: exception constructors (any name ending like this) ...
EXCEPTION_SUFFIXES = ("Error", "Exception", "Warning", "Exit")
#: ... and log / warning / argparse calls (`log.error`, `warnings.warn`, `parser.error`, ...).
MESSAGE_METHODS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log", "fail"}
#: A str.format replacement field: `{}`, `{0}`, `{name}`, `{name.attr}`, `{name[key]}`, with
#: conversion and format spec; not `${...}` (an OmegaConf interpolation) and not `{{`.
PLACEHOLDER = re.compile(r"(?<![{$])\{(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]{}]*\])*|\d*)(?:![rsa])?(?::[^{}]*)?\}")

#: (file, literal text) -> why its braces are meant literally.
ALLOWED: dict[tuple[str, str], str] = {}


def _called_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_message_call(call: ast.Call) -> bool:
    name = _called_name(call)
    return name.endswith(EXCEPTION_SUFFIXES) or (isinstance(call.func, ast.Attribute) and name in MESSAGE_METHODS)


def _plain_literals(expression: str) -> list[str]:
    """The non-f string literals of an expression's source that are not a `.format` template."""
    tokens = [t for t in tokenize.generate_tokens(io.StringIO(f"({expression})").readline)
              if t.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT)]
    found = []
    for index, token in enumerate(tokens):
        if token.type != tokenize.STRING:
            continue  # Python 3.12 tokenizes f-strings as FSTRING_START/MIDDLE/END: never STRING
        prefix = re.match(r"[A-Za-z]*", token.string).group().lower()
        following = [t.string for t in tokens[index + 1:index + 3]]
        if "f" in prefix or following in ([".", "format"], [".", "format_map"]):
            continue
        found.append(token.string)
    return found


def unformatted_placeholders(path: Path) -> list[tuple[int, str]]:
    """(line, literal) for every plain literal with a `{field}` passed to a message call in `path`."""
    source = path.read_text()
    hits = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not (isinstance(node, ast.Call) and _is_message_call(node)):
            continue
        for argument in [*node.args, *(k.value for k in node.keywords)]:
            segment = ast.get_source_segment(source, argument)
            for literal in _plain_literals(segment or ""):
                if PLACEHOLDER.search(literal):
                    hits.append((argument.lineno, literal))
    return sorted(hits)


def test_the_scan_finds_a_missing_f_prefix(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        'def claim(run_dir, key):\n'
        '    raise ConfigError(f"{run_dir} holds another run (key {key}); "\n'
        '                      "resume it with `recdistill train resume={run_dir}`")\n'
        'log.warning("cache {path} is stale")\n'
        'ok = ConfigError(f"{run_dir}: {{literal}}")\n'
        'log.info("template {name}".format(name=1))\n'
        'raise DataError("interpolation ${oc.env:HOME} and %s", 1)\n'
        'raise ValueError("a set {1, 2} and a dict {}")\n')
    assert [line for line, _ in unformatted_placeholders(sample)] == [2, 4, 8]


def test_user_facing_messages_have_no_unformatted_placeholders():
    hits = [(path.relative_to(ROOT).as_posix(), line, literal)
            for path in sorted(PACKAGE.rglob("*.py")) for line, literal in unformatted_placeholders(path)]
    unlisted = [f"  {file}:{line}  {literal}" for file, line, literal in hits if (file, literal) not in ALLOWED]
    assert not unlisted, ("string literals with {placeholders} passed to an exception or log call without an "
                          "f prefix (add the f, or list a literal meant as it is in ALLOWED):\n" + "\n".join(unlisted))
    stale = set(ALLOWED) - {(file, literal) for file, _, literal in hits}
    assert not stale, f"ALLOWED lists literals that no longer occur; remove them: {sorted(stale)}"
