"""Suggested shell commands built from argv parts: values are data, never code.

Every remediation command kpdoctor prints is meant to be pasted into a root shell, and many carry
values other people control (rule text from a node, object names from the API or a bundle). This
module is the one place such a command becomes text:

- a plain `str` part is a *value*: it is quoted with `shlex.quote`, so `$(...)`, backticks, `;`,
  quotes and spaces stay literal;
- `Name(value)` is a Kubernetes object or node name: it must follow the API's naming rules (a DNS
  subdomain), so it can neither start an option (`--all`) nor carry shell syntax;
- `Lit(text)` is shell syntax written in kpdoctor's own source (`|`, `>`, `;`, `$t`) and nothing else;
- `on=NODE` and `note=` become a trailing `# ...` comment whose text has every control, line-break
  and bidi character escaped, so a value can never end the comment and start a new command line.

A value that cannot be shown safely on one line (control, line-break, invisible or bidi characters)
makes the command *not offered*: it renders as a comment saying why. `render` never raises.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass

# A Kubernetes object name (RFC 1123 subdomain, as Node, Namespace, DaemonSet, Pod and ConfigMap names are).
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")



class UnsafeValue(ValueError):
    """A value that no quoting makes safe to print in a command line."""


@dataclass(frozen=True, slots=True)
class Lit:
    """Shell syntax from kpdoctor's own source (never a value read from outside)."""

    text: str


@dataclass(frozen=True, slots=True)
class Name:
    """A Kubernetes object name, optionally glued to a literal prefix (`spec.nodeName=` + name)."""

    value: str
    prefix: str = ""


Part = str | Lit | Name


def unsafe_char(ch: str) -> bool:
    """Characters a terminal or a shell line would not show as themselves: controls, line and paragraph
    separators, format characters (bidi overrides, zero-width), surrogates, unassigned and private use."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def escape_text(text: str) -> str:
    """`text` with every unsafe character as a visible `\\xNN`/`\\uNNNN` escape (one line, inert)."""
    if not any(unsafe_char(c) for c in text):
        return text
    out = []
    for c in text:
        if unsafe_char(c):
            code = ord(c)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(c)
    return "".join(out)


def quote(value: str) -> str:
    """One value as one shell word (shlex.quote), or UnsafeValue when it cannot stay on one visible line."""
    if any(unsafe_char(c) for c in value):
        raise UnsafeValue(f"value {escape_text(value)!r} has control, line-break or invisible characters")
    return shlex.quote(value)


def k8s_name(value: str) -> str:
    """`value` if it is a valid Kubernetes object name, else UnsafeValue."""
    if len(value) > 253 or not _K8S_NAME.match(value):
        raise UnsafeValue(f"{escape_text(value)!r} is not a valid Kubernetes name")
    return value


def _part(part: Part) -> str:
    if isinstance(part, Lit):
        return part.text
    if isinstance(part, Name):
        return quote(part.prefix + k8s_name(part.value))
    return quote(part)


@dataclass(frozen=True, slots=True)
class Command:
    """A command line as parts (values, names, literal syntax) plus where to run it."""

    parts: tuple[Part, ...]
    on: str | None = None  # node name: rendered as `# on NODE`
    note: str = ""  # trailing comment text (kpdoctor's own words, may quote values; escaped)

    def render(self) -> str:
        try:
            line = " ".join(_part(p) for p in self.parts)
        except UnsafeValue as exc:
            return "# command not offered: " + escape_text(str(exc))
        return line + _comment(self.on, self.note)


def _comment(on: str | None, note: str) -> str:
    """`   # on NODE<note>`: the note carries its own leading punctuation (", or ...", ": expect 0")."""
    text = (f"on {on}" + note) if on is not None else note.lstrip(",: ")
    return f"   # {escape_text(text)}" if text else ""


def command(*parts: Part, on: str | None = None, note: str = "") -> str:
    """Render one suggested command (see the module doc); never raises."""
    return Command(tuple(parts), on, note).render()

