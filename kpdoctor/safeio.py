"""Bounded, type-checked reading of files other people made (bundles, snapshots, node dumps).

One place decides how much kpdoctor reads and how deep it parses:

- every file is opened without following a symlink (`O_NOFOLLOW`) and without blocking on a FIFO
  (`O_NONBLOCK`), must be a regular file, and may hold at most `max_file_bytes`;
- a directory walk never descends through a symlink and yields regular files only (FIFOs, devices,
  sockets and symlinks are skipped), so a bundle cannot point the scan outside itself;
- JSON and YAML are parsed with a nesting limit (`max_depth`), YAML with an alias limit (an alias bomb
  is an input error, not minutes of CPU), and JSON numbers must be finite (`1e999` is an input error).

Limits are configurable through the environment (`KPDOCTOR_MAX_FILE_MB`, `KPDOCTOR_MAX_DEPTH`,
`KPDOCTOR_MAX_YAML_ALIASES`); the defaults fit a 10,000-Service cluster with a wide margin
(its EndpointSlice list is ~60 MB, an iptables-save ~40 MB). Every violation is an `InputError` naming
the file (and line when known), which the CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kpdoctor.errors import InputError


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise InputError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise InputError(f"{name} must be positive, not {value}")
    return value


@dataclass(frozen=True, slots=True)
class Limits:
    max_file_bytes: int = 1024 * 1024 * 1024  # one file of a bundle, snapshot or node dump (1 GiB)
    max_depth: int = 100  # JSON/YAML nesting (Kubernetes objects nest < 20)
    max_yaml_aliases: int = 1000  # alias references per YAML stream

    @classmethod
    def from_env(cls) -> Limits:
        return cls(_env_int("KPDOCTOR_MAX_FILE_MB", 1024) * 1024 * 1024,
                   _env_int("KPDOCTOR_MAX_DEPTH", 100), _env_int("KPDOCTOR_MAX_YAML_ALIASES", 1000))


def limits() -> Limits:
    return Limits.from_env()


def too_big(size: int, where: str, lim: Limits | None = None) -> InputError:
    lim = lim or limits()
    return InputError(f"file is {size:,} bytes, above the {lim.max_file_bytes:,}-byte limit "
                      "(raise KPDOCTOR_MAX_FILE_MB to read it)", where=where)


def read_regular(path: Path, *, where: str | None = None, lim: Limits | None = None) -> bytes | None:
    """The bytes of `path` if it is a regular file (not a symlink, FIFO, device), else None.

    Bigger than the limit, or unreadable: InputError naming the file."""
    lim = lim or limits()
    label = where or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno in (40, 6, 19):  # ELOOP (a symlink), ENXIO (FIFO without writer / socket), ENODEV
            return None
        raise InputError(f"cannot read: {exc.strerror}", where=label) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        if info.st_size > lim.max_file_bytes:
            raise too_big(info.st_size, label, lim)
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, min(1 << 20, lim.max_file_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > lim.max_file_bytes:  # grew while we read it
                raise too_big(total, label, lim)
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=label) from None
    finally:
        os.close(fd)


def regular_files(root: Path) -> Iterator[Path]:
    """Regular files under `root`, sorted, never through a symlinked directory; symlinks and special
    files are skipped (`read_regular` re-checks the type when it opens them)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            path = base / name
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                yield path


def check_depth(doc: Any, where: str, lim: Limits | None = None) -> Any:
    """`doc` unchanged, or InputError when it nests deeper than the limit (checked without recursion).

    Only containers are visited (a 15 MB EndpointSlice list: ~0.3 s); YAML needs no call, its composer
    already stops at the limit, and JSON has no shared objects."""
    lim = lim or limits()
    if type(doc) is not dict and type(doc) is not list:
        return doc
    stack: list[tuple[Any, int]] = [(doc, 1)]
    pop, push, limit = stack.pop, stack.append, lim.max_depth
    while stack:
        node, depth = pop()
        if depth > limit:
            raise InputError(f"nested deeper than {limit} levels", where=where)
        for value in (node.values() if type(node) is dict else node):
            kind = type(value)
            if kind is dict or kind is list:
                push((value, depth + 1))
    return doc


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not a JSON number")


def load_json(text: str | bytes, where: str, lim: Limits | None = None) -> Any:
    """json.loads with finite numbers and a nesting limit; InputError (file:line) otherwise."""
    lim = lim or limits()
    try:
        doc = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} (column {exc.colno})", where=f"{where}:{exc.lineno}") from None
    except RecursionError:
        raise InputError(f"nested deeper than {lim.max_depth} levels", where=where) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid JSON: {exc}", where=where) from None
    return check_depth(doc, where, lim)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses deep nesting, many aliases, recursive aliases and aliases that expand to far
    more nodes than the text holds (a "billion laughs" bomb), all while composing: before any object exists."""

    max_depth = 100
    max_aliases = 1000
    max_expanded = 1_000_000  # nodes after alias expansion, beyond MIN_EXPANSION x the nodes written
    MIN_EXPANSION = 10

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0
        self._written = 0
        self._weight: dict[int, int] = {}  # id(node) -> nodes it stands for once aliases are expanded

    def _refuse(self, problem: str) -> yaml.composer.ComposerError:
        return yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > self.max_aliases:
                raise self._refuse(f"more than {self.max_aliases} YAML aliases")
            anchor = self.peek_event().anchor
            target = self.anchors.get(anchor)
            if target is not None and id(target) not in self._weight:
                raise self._refuse(f"recursive YAML alias *{anchor}")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise self._refuse(f"nested deeper than {self.max_depth} levels")
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._written += 1
        if isinstance(node, yaml.SequenceNode):
            weight = 1 + sum(self._weight.get(id(c), 1) for c in node.value)
        elif isinstance(node, yaml.MappingNode):
            weight = 1 + sum(self._weight.get(id(k), 1) + self._weight.get(id(v), 1) for k, v in node.value)
        else:
            weight = 1
        self._weight[id(node)] = weight
        if weight > max(self.max_expanded, self.MIN_EXPANSION * self._written):
            raise self._refuse(f"YAML aliases expand to more than {weight:,} nodes (an alias bomb)")
        return node


def load_yaml_all(text: str, where: str, lim: Limits | None = None) -> list[Any]:
    """Every non-empty YAML document of `text`, with nesting and alias limits; InputError (file:line)."""
    lim = lim or limits()
    loader_cls = type("Loader", (_BoundedLoader,), {"max_depth": lim.max_depth,
                                                    "max_aliases": lim.max_yaml_aliases})
    try:
        loader = loader_cls(text)
        try:
            docs = []
            while loader.check_data():
                doc = loader.get_data()
                if doc is not None:
                    docs.append(doc)
            return docs
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"invalid YAML: {problem}", where=f"{where}{line}") from None
    except RecursionError:
        raise InputError(f"nested deeper than {lim.max_depth} levels", where=where) from None
    except ValueError as exc:  # e.g. a timestamp or number the constructor cannot represent
        raise InputError(f"invalid YAML: {exc}", where=where) from None


def load_yaml(text: str, where: str, lim: Limits | None = None) -> Any:
    """The single YAML document of `text` (None when empty), bounded like `load_yaml_all`."""
    docs = load_yaml_all(text, where, lim)
    return docs[0] if docs else None
