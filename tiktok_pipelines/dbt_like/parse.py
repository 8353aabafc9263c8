"""Reading one model file: the YAML header (with line numbers) and the ``{{ ref }}``/``{{ source }}`` tags.

Nothing here knows about other models; ``project.py`` resolves names across files. Every problem is
a :class:`ModelError` that names the file and the line, so an author can jump straight to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
IDENTIFIER_RULE = "a plain SQL identifier ([A-Za-z_][A-Za-z0-9_]*)"


class ModelError(ValueError):
    """A model or seed file is invalid. ``str(e)`` is ``"<path>:<line>: <message>"``."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and IDENTIFIER_RE.fullmatch(name) is not None


def line_of(text: str, offset: int) -> int:
    """1-based line of a character offset."""
    return text.count("\n", 0, offset) + 1


# ------------------------------------------------------------------ header

_HEADER_OPEN_RE = re.compile(r"\A(\s*)/\*[ \t]*---[ \t]*\n")
_HEADER_CLOSE_RE = re.compile(r"^[ \t]*---[ \t]*\*/[ \t]*$", re.MULTILINE)


@dataclass
class Header:
    """The header's data plus where each part of it sits in the file."""

    data: dict[str, Any]
    lines: dict[tuple, int]  # path of keys/indices -> 1-based file line
    first_line: int

    def line(self, *path: object) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.first_line


@dataclass
class SplitFile:
    header: Header
    body: str
    body_offset: int  # character offset of the body in the file text


def split_header(text: str, path: str) -> SplitFile:
    """Separate the ``/* --- ... --- */`` YAML header from the SQL body and parse the YAML."""
    m = _HEADER_OPEN_RE.match(text)
    if not m:
        line = line_of(text, len(text) - len(text.lstrip()))
        raise ModelError(path, line, "a model starts with a header: '/* ---' on its own line, YAML "
                         "(materialized, description, columns), then '--- */' (see dbt_like_models/README.md)")
    open_line = line_of(text, len(m.group(1)))
    close = _HEADER_CLOSE_RE.search(text, m.end())
    if not close:
        raise ModelError(path, open_line, "the header opened here is never closed with '--- */'")
    yaml_text = text[m.end():close.start()]
    first = open_line + 1  # file line of the YAML's first line
    try:
        node = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = first + (mark.line if mark else 0)
        raise ModelError(path, line, f"header is not valid YAML: {e.problem or e}") from None
    lines: dict[tuple, int] = {}
    data = _construct(node, (), lines, first, path) if node is not None else {}
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ModelError(path, first, "the header must be a YAML mapping (materialized, description, ...)")
    return SplitFile(Header(data, lines, open_line), text[close.end():], close.end())


def _construct(node: yaml.Node, path: tuple, lines: dict[tuple, int], first: int, file: str) -> Any:
    """Build plain Python data from a YAML node, recording each key's and item's file line.
    Unlike ``yaml.safe_load`` this refuses duplicate keys, which YAML would silently overwrite."""
    lines.setdefault(path, first + node.start_mark.line)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            if not isinstance(k_node, yaml.ScalarNode):
                raise ModelError(file, first + k_node.start_mark.line, "header keys must be plain names")
            key = _scalar(k_node)
            if key in out:
                raise ModelError(file, first + k_node.start_mark.line, f"duplicate key {key!r} in the header")
            lines[path + (key,)] = first + k_node.start_mark.line
            out[key] = _construct(v_node, path + (key,), lines, first, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            lines[path + (i,)] = first + item.start_mark.line
            items.append(_construct(item, path + (i,), lines, first, file))
        return items
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    return yaml.SafeLoader("").construct_object(node, deep=True)


# ------------------------------------------------------------------ templates

# A tag is {{ ... }} or {% ... %}; '{#' (a Jinja comment) is refused too, since nothing renders it.
_TAG_RE = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}|\{#", re.DOTALL)
# A quoted argument never contains a quote, so ref('a', 'b') is not read as a ref of "a', 'b".
_REF_RE = re.compile(r"""\s*ref\s*\(\s*(['"])([^'"]*)\1\s*\)\s*""")
_SOURCE_RE = re.compile(r"""\s*source\s*\(\s*(['"])([^'"]*)\1\s*,\s*(['"])([^'"]*)\3\s*\)\s*""")
TAG_HELP = "only {{ ref('model') }} and {{ source('schema', 'table') }} are supported"


@dataclass(frozen=True)
class Tag:
    kind: str  # "ref" | "source"
    args: tuple[str, ...]  # (name,) | (schema, table)
    start: int  # offsets of the whole tag in the file text
    end: int
    line: int


def parse_call(expr: str) -> tuple[str, tuple[str, ...]] | None:
    """``ref('x')`` -> ("ref", ("x",)); ``source('a','b')`` -> ("source", ("a","b")); else None."""
    m = _REF_RE.fullmatch(expr)
    if m:
        return "ref", (m.group(2),)
    m = _SOURCE_RE.fullmatch(expr)
    if m:
        return "source", (m.group(2), m.group(4))
    return None


def find_tags(text: str, start: int, path: str) -> list[Tag]:
    """Every ``{{ ref }}``/``{{ source }}`` in ``text[start:]``; anything else in braces is an error."""
    tags: list[Tag] = []
    for m in _TAG_RE.finditer(text, start):
        line = line_of(text, m.start())
        if m.group(0) == "{#":
            raise ModelError(path, line, f"Jinja comments {{# #}} are not supported: use SQL comments; {TAG_HELP}")
        if m.group(2) is not None:
            raise ModelError(path, line, f"Jinja statements {{% {m.group(2).strip()} %}} are not supported; {TAG_HELP}")
        expr = m.group(1)
        call = parse_call(expr)
        if call is None:
            raise ModelError(path, line, f"cannot render {{{{{expr}}}}}: {TAG_HELP}")
        kind, args = call
        for a in args:
            if not is_identifier(a):
                what = "ref target" if kind == "ref" else "source name"
                raise ModelError(path, line, f"{what} {a!r} is not {IDENTIFIER_RULE}")
        tags.append(Tag(kind, args, m.start(), m.end(), line))
    # An opening '{{' or '{%' left without its closing pair (the regex above never matched it).
    rest = _TAG_RE.sub(lambda mm: " " * len(mm.group(0)), text[start:])
    for opener in ("{{", "{%"):
        i = rest.find(opener)
        if i >= 0:
            closer = "}}" if opener == "{{" else "%}"
            raise ModelError(path, line_of(text, start + i), f"'{opener}' is never closed with '{closer}'")
    return tags


@dataclass
class ParsedFile:
    """One model file before names are resolved across the project."""

    header: Header
    body: str
    body_offset: int
    text: str
    tags: list[Tag] = field(default_factory=list)


def parse_model_file(text: str, path: str) -> ParsedFile:
    text = text.lstrip("\ufeff")
    split = split_header(text, path)
    tags = find_tags(text, split.body_offset, path)
    return ParsedFile(split.header, split.body, split.body_offset, text, tags)


def render(parsed: ParsedFile, relation_of: dict[tuple[str, tuple[str, ...]], str]) -> str:
    """The body with each tag replaced by its relation; header gone, trailing ';' dropped."""
    out: list[str] = []
    pos = parsed.body_offset
    for t in parsed.tags:
        out.append(parsed.text[pos:t.start])
        out.append(relation_of[(t.kind, t.args)])
        pos = t.end
    out.append(parsed.text[pos:])
    sql = "".join(out).strip()
    while sql.endswith(";"):
        sql = sql[:-1].rstrip()
    return sql
