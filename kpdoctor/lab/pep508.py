"""PEP 508 requirement lines (a distribution's `Requires-Dist`) with the standard library only: the required
name, and whether the line's environment marker holds here with no extra requested.

kpdoctor.lab.pyimage walks kpdoctor's installed requirement closure to lay out the lab's kpdoctor image (what
the in-cluster Job and `--analyze-in-pod` lab tests and bench/bench_collector_pod.py run). It used `packaging`,
which only the dev extra brings (through pytest), so building that image failed on a plain install; this is
the part of `packaging` it needs (the marker grammar, the default marker environment, and PEP 440 comparison
of release versions), rather than a new runtime dependency for a lab-only path. Anything outside that (a marker it cannot parse, an ordering
comparison of a pre/post/dev version) is a ValueError naming the line, never a guess.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from collections.abc import Callable

NAME_RE = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
TOKEN_RE = re.compile(
    r"""\s*(?:(?P<str>'[^']*'|"[^"]*")|(?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)|(?P<paren>[()])|"""
    r"""(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"""
)
RELEASE_RE = re.compile(r"^v?(\d+(?:\.\d+)*)$")
WILDCARD_RE = re.compile(r"^v?(\d+(?:\.\d+)*)\.\*$")
ALIASES = {"os.name": "os_name", "sys.platform": "sys_platform", "platform.version": "platform_version",
           "platform.machine": "platform_machine", "platform.python_implementation": "platform_python_implementation",
           "python_implementation": "platform_python_implementation"}  # fmt: skip
VERSION_OPS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], bool]] = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}  # fmt: skip


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def environment() -> dict[str, str]:
    """The marker variables of this interpreter (PEP 508's table)."""
    impl = sys.implementation.version
    impl_version = f"{impl.major}.{impl.minor}.{impl.micro}"
    if impl.releaselevel != "final":
        impl_version += impl.releaselevel[0] + str(impl.serial)
    return {"implementation_name": sys.implementation.name, "implementation_version": impl_version,
            "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
            "platform_system": platform.system(), "platform_version": platform.version(),
            "python_full_version": platform.python_version(),
            "platform_python_implementation": platform.python_implementation(),
            "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform}  # fmt: skip


def requirement_name(line: str) -> str:
    """The distribution name a requirement line names."""
    match = NAME_RE.match(line)
    if not match:
        raise ValueError(f"not a requirement: {line!r}")
    return match.group(1)


def marker_text(line: str) -> str:
    """The line's environment marker ('' when it has none). A URL requirement's marker follows whitespace + ';'."""
    if "@" in line.split(";", 1)[0]:
        match = re.search(r"\s;", line)
        return line[match.end():].strip() if match else ""
    return line.split(";", 1)[1].strip() if ";" in line else ""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text.rstrip()):
        match = TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse marker {text!r} at {pos}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _release(value: str) -> tuple[int, ...] | None:
    match = RELEASE_RE.match(value.strip())
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def _pad(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    n = max(len(a), len(b))
    return a + (0,) * (n - len(a)), b + (0,) * (n - len(b))


def _compare(lhs: str, op: str, rhs: str) -> bool:
    """PEP 508: a version comparison where the right side is a version, else a string comparison."""
    op = " ".join(op.split())
    if op in ("in", "not in"):
        return (lhs in rhs) == (op == "in")
    if op == "===":
        return lhs == rhs
    wild = WILDCARD_RE.match(rhs.strip())
    left = _release(lhs)
    if wild and op in ("==", "!=") and left is not None:
        prefix = tuple(int(p) for p in wild.group(1).split("."))
        return (_pad(left, prefix)[0][: len(prefix)] == prefix) == (op == "==")
    right = _release(rhs)
    if left is not None and right is not None and not (op == "~=" and len(right) < 2):
        if op == "~=":  # compatible release: >= right, same release up to right's last-but-one part
            return _pad(left, right)[0] >= _pad(left, right)[1] and _pad(left, right)[0][: len(right) - 1] == right[:-1]
        return VERSION_OPS[op](*_pad(left, right))
    if op in ("==", "!="):
        return (lhs == rhs) == (op == "==")
    raise ValueError(f"cannot compare {lhs!r} {op} {rhs!r} without a full PEP 440 implementation")


class _Parser:
    def __init__(self, text: str, env: dict[str, str]) -> None:
        self.toks, self.i, self.env, self.text = _tokens(text), 0, env, text

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", "")

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> bool:
        value = self.or_()
        if self.peek()[0] != "end":
            raise ValueError(f"cannot parse marker {self.text!r}: unexpected {self.peek()[1]!r}")
        return value

    def or_(self) -> bool:
        value = self.and_()
        while self.peek() == ("word", "or"):
            self.take()
            value = self.and_() or value  # both sides parsed: a syntax error anywhere is found
        return value

    def and_(self) -> bool:
        value = self.atom()
        while self.peek() == ("word", "and"):
            self.take()
            value = self.atom() and value
        return value

    def atom(self) -> bool:
        if self.peek() == ("paren", "("):
            self.take()
            value = self.or_()
            if self.take() != ("paren", ")"):
                raise ValueError(f"cannot parse marker {self.text!r}: missing ')'")
            return value
        lhs, lhs_var = self.value()
        kind, op = self.take()
        if kind != "op":
            raise ValueError(f"cannot parse marker {self.text!r}: expected an operator, got {op!r}")
        rhs, rhs_var = self.value()
        if "extra" in (lhs_var, rhs_var):  # extras compare normalized (PEP 685)
            lhs, rhs = _canon(lhs), _canon(rhs)
        return _compare(lhs, op, rhs)

    def value(self) -> tuple[str, str]:
        kind, text = self.take()
        if kind == "str":
            return text[1:-1], ""
        if kind == "word" and ALIASES.get(text, text) in self.env:
            var = ALIASES.get(text, text)
            return self.env[var], var
        raise ValueError(f"cannot parse marker {self.text!r}: unknown value {text!r}")


def applies(line: str, env: dict[str, str] | None = None) -> bool:
    """Whether the requirement `line` applies here with no extra requested (no marker: it always does)."""
    marker = marker_text(line)
    if not marker:
        return True
    return _Parser(marker, {**(env if env is not None else environment()), "extra": ""}).parse()
