"""File names and arguments as GNU coreutils' messages show them, control bytes escaped, so that
a message stays on one line and sends no terminal escape: a name as a shell would read it
(``shuf: 'bad'$'\\n''name': No such file or directory``), an argument in C escapes
(``shuf: invalid line count: 'x\\ny'``)."""

from __future__ import annotations

import os

#: Characters that make a name need quoting anywhere in it.
_SPECIAL = frozenset(" \t'\"\\$`;&()?|<>*!^=:[")
#: Characters that need it only as the name's first.
_SPECIAL_FIRST = frozenset("~#")
#: Characters a double-quoted name could not hold as they are: a name with ``'`` and none of
#: these is put in double quotes.
_NOT_IN_DOUBLE = frozenset("\"$`\\!")
#: Control characters with a letter of their own in ``$'...'``.
_LETTERS = {7: "a", 8: "b", 9: "t", 10: "n", 11: "v", 12: "f", 13: "r"}


def _chars(text: str) -> str:
    """``text`` as the bytes a system call would be given, decoded back with each byte that is not
    UTF-8 kept as a surrogate (a lone surrogate a caller put in a str is taken as its UTF-8 bytes)."""
    try:
        raw = os.fsencode(text)
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "surrogateescape")


def _escape(ch: str) -> str | None:
    """``ch`` as written inside ``$'...'`` if it must be escaped there (a control character or a
    byte that is not UTF-8, kept by ``surrogateescape``), else None."""
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\{code - 0xDC00:03o}"
    if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
        if code in _LETTERS:
            return "\\" + _LETTERS[code]
        return "".join(f"\\{b:03o}" for b in ch.encode())
    return None


def quote_name(name: str) -> str:
    """``name`` as GNU tools print a file name in a message (shell-escape quoting); a URL
    (``s3://...``, which bigshuf reads through fsspec) as it is, unless it holds a control byte."""
    text = _chars(name)
    escapes = [_escape(ch) for ch in text]
    plain = not any(escapes)
    if text and plain and ("://" in text or text[0] not in _SPECIAL_FIRST and not _SPECIAL.intersection(text)):
        return text
    if "'" in text and plain and not _NOT_IN_DOUBLE.intersection(text):
        return f'"{text}"'
    out, escaping = ["'"], False
    for ch, escaped in zip(text, escapes):
        if escaped is not None:
            out.append(escaped if escaping else "'$'" + escaped)
            escaping = True
            continue
        if escaping:
            out.append("''")
            escaping = False
        out.append("'\\''" if ch == "'" else ch)
    out.append("'")
    return "".join(out)


def quote_arg(text: object) -> str:
    """``text`` as GNU tools quote an option's argument or an operand in a message (their
    ``quote()`` in a UTF-8 locale, with plain quotes): control bytes and bytes that are not
    UTF-8 escaped as in C, a backslash doubled (``invalid line count: 'x\\ny'``)."""
    chars = _chars(text if isinstance(text, str) else str(text))
    escaped = (_escape(ch) or ("\\\\" if ch == "\\" else ch) for ch in chars)
    return "'" + "".join(escaped) + "'"
