"""Reading an Actions log: which lines the runner would take as workflow commands."""

from __future__ import annotations

import re
import unicodedata

# .NET's char.IsWhiteSpace, which String.TrimStart() removes.
NET_WHITE_SPACE = "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B)))
NET_WHITE_SPACE += "\u2028\u2029\u202f\u205f\u3000"
DEFAULT_IGNORABLE = {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, *range(0x180B, 0x1810), 0x3164, *range(0xFE00, 0xFE10)}
DEFAULT_IGNORABLE |= {0xFFA0, *range(0xE0000, 0xE1000)}

# What trtci itself may print as a command: errors, warnings and notices with its titles, and the token's mask.
OWN_COMMAND = re.compile(r"^::(error|warning|notice)( title=trtci[^:]*)?::|^::add-mask::")


def collation_ignores(ch: str) -> bool:
    category = unicodedata.category(ch)
    return ch != "\t" and (category in ("Cc", "Cf", "Cn", "Cs", "Zl", "Zp") or ord(ch) in DEFAULT_IGNORABLE)


def log_lines(text: str) -> list[str]:
    return re.split(r"\r\n|\r|\n", text)


def reads_as_command(line: str) -> bool:
    visible = "".join(ch for ch in line if not collation_ignores(ch))
    return visible.lstrip(NET_WHITE_SPACE).startswith("::") or "##[" in visible



def commands_in(output: str) -> list[str]:
    return [line for line in log_lines(output) if reads_as_command(line)]

