"""Ruby's ``Array#join`` and ``#inspect`` for JSON values, as the plugins leak them into Redis:
resque-retry's sha1 input and resque-lock-timeout's identifier are ``args.join('-')``.

Pure: strings in, strings out.
"""
from __future__ import annotations

import unicodedata
from typing import Any, Optional, Sequence

from resque_compat.wire.codec import ruby_float

#: ``Hash#inspect``'s separator: ``{"a"=>1}`` up to Ruby 3.3, ``{"a" => 1}`` from Ruby 3.4.
HASH_ARROW = "=>"


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f", "\v": "\\v", "\b": "\\b",
            "\a": "\\a", "\x1b": "\\e", '"': '\\"', "\\": "\\\\"}


def _printable(ch: str) -> bool:
    """Onigmo's [[:print:]] for UTF-8: not a control, surrogate or unassigned code point, and
    not a line/paragraph separator (the other white space is Zs or a control)."""
    return unicodedata.category(ch) not in ("Cc", "Cs", "Cn") and ch not in "\u2028\u2029"


def _inspect_string(text: str) -> str:
    out = ['"']
    for i, ch in enumerate(text):
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch == "#" and text[i + 1:i + 2] in ("{", "$", "@"):
            out.append("\\#")  # would start an interpolation in a Ruby literal
        elif _printable(ch):
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\u{code:04X}" if code < 0x10000 else f"\\u{{{code:X}}}")
    out.append('"')
    return "".join(out)


def ruby_inspect(value: Any, hash_arrow: Optional[str] = None) -> str:
    """``value.inspect`` for what JSON decodes to (strings, numbers, nil, booleans, arrays,
    string-keyed hashes), with a UTF-8 ``Encoding.default_external``."""
    hash_arrow = HASH_ARROW if hash_arrow is None else hash_arrow
    if isinstance(value, str):
        return _inspect_string(value)
    if value is None:
        return "nil"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return ruby_float(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(ruby_inspect(v, hash_arrow) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(ruby_inspect(k, hash_arrow) + hash_arrow + ruby_inspect(v, hash_arrow)
                               for k, v in value.items()) + "}"
    raise TypeError(f"no Ruby equivalent for {type(value).__name__} {value!r}; job arguments are JSON values")


def ruby_join(values: Sequence[Any], separator: str, hash_arrow: Optional[str] = None) -> str:
    """``Array#join``: strings as they are, nested arrays joined (flattened) with the same
    separator, nil as "", anything else by ``to_s`` (a Hash's is its ``inspect``)."""
    parts = []
    for value in values:
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, (list, tuple)):
            parts.append(ruby_join(value, separator, hash_arrow))
        elif value is None:
            parts.append("")
        else:
            parts.append(ruby_inspect(value, hash_arrow))  # to_s == inspect for the rest
    return separator.join(parts)
