"""Label selectors in the syntax of Kubernetes' ``labels.Parse``.

Linear in the selector's length: one regex pass makes the tokens (``findall`` skips the
whitespace between them), then one pass over the tokens. The parser before this one
re-scanned the rest of the string after every token (``text[pos:].strip()``), so a
selector of n tokens cost O(n^2) characters: a 64 KiB selector, about 5 x 10^8.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


class SelectorError(ValueError):
    """A labelSelector that Kubernetes' ``labels.Parse`` would reject."""


_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_TOKENS = re.compile(r"==|!=|=|!|\(|\)|,|[^\s=!(),]+")
MAX_SHOWN = 80
"""Characters of the selector quoted in an error message (the rest is elided)."""


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a selector: ``op`` is one of =, !=, in, notin, exists, !exists."""

    key: str
    op: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        if self.op in ("=", "in"):
            return has and labels[self.key] in self.values
        return not has or labels[self.key] not in self.values  # != and notin


def _check_key(key: str) -> str:
    # The length check comes first: the pattern is then run on at most 316 characters.
    if len(key) > 316 or not _KEY.match(key):
        raise SelectorError(f"invalid label key {_shown(key)}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise SelectorError(f"invalid label value {_shown(value)}: at most 63 characters, "
                            "alphanumerics, '-', '_' or '.', alphanumeric at both ends")
    return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def tokenize(text: str) -> list[str]:
    """The selector's tokens: operators, parentheses, commas and words."""
    return _TOKENS.findall(text)


def parse_selector(text: str) -> tuple[Requirement, ...]:
    """Parse a label selector string in the syntax of Kubernetes' ``labels.Parse``:
    comma-separated ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``,
    ``!k``. The empty string selects everything. Raises SelectorError."""
    tokens = tokenize(text)
    n = len(tokens)
    out: list[Requirement] = []
    i = 0
    where = _shown(text)

    def take() -> str:
        nonlocal i
        if i >= n:
            raise SelectorError(f"unexpected end of selector {where}")
        i += 1
        return tokens[i - 1]

    while i < n:
        tok = take()
        if tok == "!":
            out.append(Requirement(_check_key(take()), "!exists"))
        elif tok in ("=", "==", "!=", "(", ")", ","):
            raise SelectorError(f"expected a label key in {where}, found {tok!r}")
        else:
            key = _check_key(tok)
            nxt = tokens[i] if i < n else ","
            if nxt == ",":
                out.append(Requirement(key, "exists"))
            elif nxt in ("=", "==", "!="):
                take()
                value = tokens[i] if i < n and tokens[i] != "," else ""
                if value:
                    take()
                op = "!=" if nxt == "!=" else "="
                out.append(Requirement(key, op, frozenset({_check_value(value)})))
            elif nxt in ("in", "notin"):
                take()
                if take() != "(":
                    raise SelectorError(f"expected '(' after {nxt} in {where}")
                values: set[str] = set()
                while True:
                    tok = take()
                    if tok == ")":
                        break
                    if tok == ",":
                        continue
                    values.add(_check_value(tok))
                if not values:
                    raise SelectorError(f"{key} {nxt} () needs at least one value")
                out.append(Requirement(key, nxt, frozenset(values)))
            else:
                raise SelectorError(f"unexpected {_shown(nxt)} after key {key!r} in {where}")
        if i < n:
            if tokens[i] != ",":
                raise SelectorError(f"expected ',' in {where}, found {_shown(tokens[i])}")
            i += 1
            if i == n:
                raise SelectorError(f"trailing ',' in {where}")
    return tuple(out)
