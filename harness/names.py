"""What a model or baseline name may be: a name, never a path. Checked at the edge (CLI flags, recipes).

    check_name("ties-exp2")        -> "ties-exp2"
    check_name("../x", "--name")   -> HarnessError naming the flag and the rule
"""

from __future__ import annotations

import re

from harness.errors import HarnessError

NAME_RULE = "1-100 characters: letters, digits, '.', '_', '-', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_name(value: str) -> bool:
    return bool(_NAME.fullmatch(value)) and ".." not in value


def check_name(value: str, what: str = "--name") -> str:
    if not is_name(value):
        raise HarnessError(f"{what} {value!r} is not a name", f"use {NAME_RULE} (a name, not a path)")
    return value
