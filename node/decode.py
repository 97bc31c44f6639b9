"""Strict decoding of plain data (a loaded YAML document) into msgspec Structs, every error
named by its path.

Offers:

* ``decode(raw, typ, dec_hook=...)``: ``msgspec.convert(raw, typ, strict=True)``; on failure
  raises :class:`DecodeError`, whose ``problems`` lists every error found, each written
  ``<path>: <what is wrong>``, e.g. ``membership.probe_interval: expected a number, got "fast"``
  or ``nodes[1].http_port: expected a whole number, got "8001"``.
* ``problems(raw, typ, dec_hook=...)``: that list (empty when ``raw`` decodes).

How every error is found although msgspec stops at the first: when a value does not convert,
its children are converted one by one (struct fields, list items) and the walk descends into
those that fail; a value whose children all convert is itself the culprit (a check of its
``__post_init__``), reported with msgspec's message.  Unknown keys are reported for every
struct declared with ``forbid_unknown_fields``, with the keys it knows.

Messages raised by a ``__post_init__`` name the field they are about as ``field: text``
(several problems: one per line); the path of the struct is put in front
(``nodes[0]`` + ``weight: ...`` -> ``nodes[0].weight: ...``); a message that already starts with
that path is kept as it is.

Bounds: the walk visits each value of ``raw`` at most once per level of the type's nesting;
rendered values are cut to 60 characters.
"""

from __future__ import annotations

import difflib
import json
import re
import typing
from typing import Any, Callable, Literal

import msgspec

__all__ = ["DecodeError", "decode", "problems"]

Hook = Callable[[type, Any], Any]

_AT = re.compile(r"^(?P<msg>.*?)(?: - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`)?$", re.S)
_EXPECTED = re.compile(r"^Expected `(?P<types>[^`]+)`(?P<rest>.*)$", re.S)
_GOT = re.compile(r"^, got `[^`]+`$")
_FIELD_LINE = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_WORDS = {"int": "a whole number", "float": "a number", "str": "a string", "bool": "true or false",
          "array": "a list", "object": "a mapping", "null": "null"}
_VALUE_CHARS = 60


class DecodeError(ValueError):
    """``raw`` does not decode into the type; ``problems`` holds every error, with its path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


def decode(raw: Any, typ: type, *, dec_hook: Hook | None = None) -> Any:
    """``raw`` as a ``typ``, converted strictly; :class:`DecodeError` names every problem."""
    try:
        return msgspec.convert(raw, typ, strict=True, dec_hook=dec_hook)
    except msgspec.ValidationError as e:
        found = problems(raw, typ, dec_hook=dec_hook) or _render(str(e), raw, "")
        raise DecodeError(found) from None


def problems(raw: Any, typ: Any, *, dec_hook: Hook | None = None, path: str = "") -> list[str]:
    """Every reason ``raw`` does not decode into ``typ`` (empty: it does), each with its path."""
    try:
        msgspec.convert(raw, typ, strict=True, dec_hook=dec_hook)
        return []
    except msgspec.ValidationError as e:
        own = _render(str(e), raw, path)
    literal = _literal_values(typ)
    if literal is not None:
        allowed = ", ".join(json.dumps(v) for v in literal)
        return [f"{path or 'top level'}: expected one of {allowed}, got {_show(raw)}"]
    return _children(raw, typ, dec_hook, path) or own


# ---- the walk -----------------------------------------------------------------------------------
def _children(raw: Any, typ: Any, dec_hook: Hook | None, path: str) -> list[str]:
    typ = _strip_annotated(typ)
    if isinstance(typ, type) and issubclass(typ, msgspec.Struct):
        if not (isinstance(raw, dict) and all(isinstance(k, str) for k in raw)):
            return []
        fields = {f.encode_name: f for f in msgspec.structs.fields(typ)}
        out: list[str] = []
        if typ.__struct_config__.forbid_unknown_fields:
            for key in raw:
                if key not in fields:
                    out.append(_unknown(path, key, list(fields)))
        for name, f in fields.items():
            if name in raw:
                out += problems(raw[name], f.type, dec_hook=dec_hook, path=_join(path, name))
            elif f.required:
                out.append(f"{_join(path, name)}: required")
        return out
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (tuple, list) and isinstance(raw, list) and args:
        item = args[0]
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return []  # fixed-length tuples: msgspec's own message says enough
        out = []
        for i, value in enumerate(raw):
            out += problems(value, item, dec_hook=dec_hook, path=f"{path}[{i}]")
        return out
    return []


def _unknown(path: str, key: str, known: list[str]) -> str:
    near = difflib.get_close_matches(key, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    return f"{path or 'top level'}: unknown key {key!r} (known: {', '.join(known)}{hint})"


# ---- messages -----------------------------------------------------------------------------------
def _render(message: str, raw: Any, path: str) -> list[str]:
    m = _AT.match(message)
    assert m is not None  # the pattern matches any text
    text, sub = m.group("msg"), m.group("path") or ""
    where = _join(path, sub.lstrip(".")) if sub else path
    if m.group("key"):  # a mapping with a key that is not a string (YAML `1: x`)
        mapping = _value_at(raw, sub)
        keys = [k for k in mapping if not isinstance(k, str)] if isinstance(mapping, dict) else []
        return [f"{where or 'top level'}: keys are names, not {_show(k)}" for k in keys[:10]] or [
            f"{where or 'top level'}: keys are names (strings)"]
    expected = _EXPECTED.match(text)
    if expected:
        rest = expected.group("rest")
        words = " or ".join(_WORDS.get(t.strip(), f"`{t.strip()}`")
                            for t in expected.group("types").split("|"))
        value = _show(_value_at(raw, sub))
        if _GOT.match(rest) or not rest:
            return [f"{where or 'top level'}: expected {words}, got {value}"]
        return [f"{where or 'top level'}: expected {words}{rest}, got {value}"]
    unknown = re.match(r"^Object contains unknown field `(.*)`$", text)
    if unknown:
        return [f"{where or 'top level'}: unknown key {unknown.group(1)!r}"]
    missing = re.match(r"^Object missing required field `(.*)`$", text)
    if missing:
        return [f"{_join(where, missing.group(1))}: required"]
    return [_place(where, line) for line in text.splitlines() if line.strip()]


def _place(path: str, line: str) -> str:
    """Put ``path`` in front of one message line of a struct's own check."""
    if not path or line.startswith(path + ".") or line.startswith(path + ":"):
        return line
    if _FIELD_LINE.match(line):
        return f"{path}.{line}"
    return f"{path}: {line}"


def _join(path: str, key: str) -> str:
    if not key:
        return path
    if key.startswith("["):
        return path + key
    return f"{path}.{key}" if path else key


def _value_at(raw: Any, sub: str) -> Any:
    value = raw
    for name, index in _TOKEN.findall(sub):
        try:
            value = value[int(index)] if index else value[name]
        except (KeyError, IndexError, TypeError, ValueError):
            return None
    return value


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _strip_annotated(typ: Any) -> Any:
    while typing.get_origin(typ) is typing.Annotated:
        typ = typing.get_args(typ)[0]
    return typ


def _literal_values(typ: Any) -> tuple[Any, ...] | None:
    typ = _strip_annotated(typ)
    return typing.get_args(typ) if typing.get_origin(typ) is Literal else None
