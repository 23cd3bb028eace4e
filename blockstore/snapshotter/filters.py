"""containerd's filter language, as List (Walk) receives it.

    selectors := selector ("," selector)*        -- AND
    selector  := fieldpath [operator value]      -- no operator: the field is present
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z0-9_]+
    operator  := "==" | "!=" | "~="
    value     := quoted | [^\\s,]+
    quoted    := "..." (Go escapes); after "~=" also /.../ and |...|

Several filter strings are OR'd.  Fields of a snapshot: ``name``,
``parent``, ``kind`` (active, view, committed) and ``labels.KEY``
(``labels."a.b"`` for keys with dots).  ``parse_all`` raises InvalidInput
for a malformed filter.  Cost: linear in the filter's length; matching is
linear in the number of selectors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import InvalidInput

_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\"}
_MAX_FILTER = 64 << 10


@dataclass(frozen=True)
class Selector:
    fieldpath: tuple
    op: str | None          # None: presence
    value: str = ""


class _Parser:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def error(self, what: str):
        raise InvalidInput(f"filter {self.s!r}: {what} at offset {self.i}")

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip_space(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def quoted(self, quote: str) -> str:
        self.i += 1
        out = []
        while True:
            if self.i >= len(self.s):
                self.error("unterminated quoted string")
            c = self.s[self.i]
            self.i += 1
            if c == quote:
                return "".join(out)
            if c != "\\":
                out.append(c)
                continue
            if self.i >= len(self.s):
                self.error("unterminated escape")
            e = self.s[self.i]
            self.i += 1
            if e == quote:
                out.append(quote)
            elif e in _ESCAPES:
                out.append(_ESCAPES[e])
            elif e in "xuU":
                n = {"x": 2, "u": 4, "U": 8}[e]
                digits = self.s[self.i:self.i + n]
                if len(digits) != n or not all(d in "0123456789abcdefABCDEF" for d in digits):
                    self.error("bad escape")
                out.append(chr(int(digits, 16)))
                self.i += n
            elif e in "01234567":
                digits = self.s[self.i - 1:self.i + 2]
                if len(digits) != 3 or not all(d in "01234567" for d in digits):
                    self.error("bad escape")
                out.append(chr(int(digits, 8)))
                self.i += 2
            else:
                self.error("bad escape")

    def field(self) -> str:
        self.skip_space()
        if self.peek() == '"':
            return self.quoted('"')
        start = self.i
        while self.i < len(self.s) and (self.s[self.i].isascii() and
                                        (self.s[self.i].isalnum() or self.s[self.i] == "_")):
            self.i += 1
        if self.i == start:
            self.error("expected a field name")
        return self.s[start:self.i]

    def selector(self) -> Selector:
        path = [self.field()]
        while True:
            self.skip_space()
            if self.peek() != ".":
                break
            self.i += 1
            path.append(self.field())
        self.skip_space()
        if self.peek() in ("", ","):
            return Selector(tuple(path), None)
        op = self.s[self.i:self.i + 2]
        if op not in ("==", "!=", "~="):
            self.error("expected ==, != or ~=")
        self.i += 2
        self.skip_space()
        c = self.peek()
        if c == '"' or (op == "~=" and c in "/|"):
            value = self.quoted(c)
        else:
            start = self.i
            while self.i < len(self.s) and self.s[self.i] != "," and not self.s[self.i].isspace():
                self.i += 1
            if self.i == start:
                self.error("expected a value")
            value = self.s[start:self.i]
        if op == "~=":
            try:
                re.compile(value)
            except re.error as exc:
                self.error(f"bad regular expression ({exc})")
        return Selector(tuple(path), op, value)

    def parse(self) -> list[Selector]:
        out = [self.selector()]
        while True:
            self.skip_space()
            if self.peek() == "":
                return out
            if self.peek() != ",":
                self.error("unexpected input")
            self.i += 1
            out.append(self.selector())


def parse(text: str) -> list[Selector]:
    """One filter string: selectors that must all match ([] matches everything)."""
    if len(text) > _MAX_FILTER:
        raise InvalidInput(f"filter longer than {_MAX_FILTER} characters")
    if text == "":
        return []
    return _Parser(text).parse()


def parse_all(texts) -> list[list[Selector]]:
    """Several filter strings (OR'd); no strings matches everything."""
    return [parse(t) for t in texts]


def _field(info: dict, path: tuple) -> tuple[str, bool]:
    """(value, present) at fieldpath in a snapshot's info; containerd's snapshot
    adaptor: name, parent and kind are always present (maybe empty)."""
    if len(path) == 1 and path[0] in ("name", "parent", "kind"):
        return info[path[0]], True
    if path[0] == "labels" and len(path) >= 2:
        key = ".".join(path[1:])
        return info["labels"].get(key, ""), key in info["labels"]
    return "", False


def _matches_one(info: dict, sel: Selector) -> bool:
    value, present = _field(info, sel.fieldpath)
    if sel.op is None:
        return present
    if sel.op == "==":
        return present and value == sel.value
    if sel.op == "!=":
        return value != sel.value
    return re.search(sel.value, value) is not None


def matches(info: dict, filters: list[list[Selector]]) -> bool:
    """info = {name, parent, kind, labels}: does it pass any of the filters?"""
    if not filters:
        return True
    return any(all(_matches_one(info, s) for s in f) for f in filters)
