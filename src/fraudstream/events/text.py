"""Control characters: the ones the contract keeps out of ids, and how any text is shown.

Text that reaches an analyst's terminal or `app.log` may come from anywhere (a record the job
admitted before the contract forbade control characters, a foreign producer on the alerts topic,
a dead letter's raw text). An escape sequence (`ESC ] 0 ; ... BEL`) could retitle or rewrite the
terminal, a newline could forge a line in the log and a bidirectional override could reorder what
is read. So every place that shows such text passes it through `escape_controls` first. This
module imports nothing of the project: the parser, the CLI and the Kafka tools all use it.
"""

from __future__ import annotations

import re

# C0 (U+0000-U+001F), DEL and C1 (U+007F-U+009F), the line and paragraph separators, and the
# bidirectional formatting characters (ALM, LRM, RLM, LRE..RLO, LRI..PDI). Every one of them is
# in a Unicode category that `str.isprintable` rejects (Cc, Cf, Zl, Zp): the fast path below.
_C0 = "\x00-\x1f"
_BEYOND_C0_CLASS = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
CONTROL_CLASS = _C0 + _BEYOND_C0_CLASS
_CONTROL = re.compile(f"[{CONTROL_CLASS}]")
_BEYOND_C0 = re.compile(f"[{_BEYOND_C0_CLASS}]")
_SHORT = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def first_control(text: str) -> int | None:
    """The index of the first control character in `text`, or None when it has none."""
    if text.isprintable():  # most text: no regex scan
        return None
    m = _CONTROL.search(text)
    return None if m is None else m.start()


def _escape(m: re.Match[str]) -> str:
    c = m.group()
    if c in _SHORT:
        return _SHORT[c]
    code = ord(c)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """`text` with each control character written as a visible escape (`\\x1b`, `\\n`, `\\u202e`)."""
    if text.isprintable():
        return text
    return _CONTROL.sub(_escape, text)


def escape_json_controls(json_text: str) -> str:
    """Serialized JSON with DEL, C1 and the other controls past C0 as `\\uXXXX` escapes: the same
    document.

    A JSON encoder escapes C0 inside strings itself (a raw newline is then layout, left alone)
    but writes the others as they are; outside strings JSON has none of them, so each one found
    is inside a string and its escape decodes to the same text."""
    if json_text.isprintable():
        return json_text
    return _BEYOND_C0.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
