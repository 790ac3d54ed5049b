"""Redaction of personal data in the row values sqlflow puts into messages.

Quality check samples, duplicate and tied key examples and the text of DuckDB errors can
carry row values. Before any of them reaches a log line, ``run_results.json``, the state
tables or the metrics, it goes through a :class:`Redactor`: values of the columns the user
lists become ``<redacted:column>``; in any other value (or error text) e-mail addresses,
phone numbers, card numbers (Luhn-valid), IBANs (mod-97-valid), IPv4 and IPv6 addresses
become ``<redacted:email>``, ``<redacted:phone>``, ``<redacted:card>``, ``<redacted:iban>``,
``<redacted:ip>``, and matches of the user's patterns ``<redacted:pattern>``. The rest of
the message (ids, counts, column names, check names) stays readable.

Settings come from the profile's and the model's ``sqlflow_redact``
(``{kinds: [...], columns: [...], patterns: [...]}``); :meth:`RedactSettings.check` reads
one, :meth:`RedactSettings.merged` lays a model's over the profile's. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbt_common.exceptions import DbtConfigError

KINDS: tuple[str, ...] = ("email", "phone", "card", "iban", "ip")
"""The built-in kinds of personal data, all redacted unless ``kinds`` says otherwise."""

SETTING_KEYS = ("kinds", "columns", "patterns")
EXAMPLE = "sqlflow_redact: {columns: [full_name], patterns: ['EMP-[0-9]{6}']}"

COLUMN_MARK = "<redacted:column>"
PATTERN_MARK = "<redacted:pattern>"


def mark(kind: str) -> str:
    """The placeholder that replaces a value of ``kind``."""
    return f"<redacted:{kind}>"


# -- the built-in detectors -----------------------------------------------------------------
# Each is a regex finding candidates plus, where a shape alone would catch ids, dates or
# versions, a check of the candidate. Bounds keep them off parts of longer words and
# numbers: a load id (hex), a timestamp or a version string never matches.

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# 13-19 digits, bare or in groups of four (Amex 4-6-5) joined by one space or dash.
_CARD = re.compile(
    r"(?<![\w.+-])(?:\d{13,19}|\d{4}([ -])\d{4}\1\d{4}\1\d{1,7}|\d{4}([ -])\d{6}\2\d{5})(?![\w-])"
)

_IBAN = re.compile(
    r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?!\w)"
)

# International (+ and 7-15 digits), North American ((415) 555-2671, 415-555-2671,
# 415.555.2671) and national forms with a trunk 0 (020 7946 0958, 06 12 34 56 78,
# 0612345678). Dates (2025-01-03) and times have other shapes.
_PHONE = re.compile(
    r"(?<![\w+])\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,4}){1,5}(?![\w-]?\d)"
    r"|(?<![\w.+-])(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}(?![\w-]?\d)"
    r"|(?<![\w.+-])0[1-9]\d{0,3}(?:[ -]\d{2,4}){2,4}(?![\w:-]?\d)"
    r"|(?<![\w.+-])0[1-9]\d{8,10}(?![\w.-]?\d)"
)

_IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check of card numbers."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(text: str) -> bool:
    """Whether ``text`` (spaces allowed) is an IBAN: 15-34 characters, mod 97 equal to 1."""
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _is_card(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)


def _is_phone(candidate: str) -> bool:
    return 7 <= sum(c.isdigit() for c in candidate) <= 15 and candidate[-1].isdigit()


def _is_ipv6(candidate: str) -> bool:
    if sum(1 for part in candidate.split(":") if part) < 2:
        return False  # "::", "a::": no address anyone owns
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


Detector = tuple[str, re.Pattern[str], Callable[[str], bool] | None]

# Order matters: an IBAN or card number holds digit runs a phone pattern would take.
DETECTORS: tuple[Detector, ...] = (
    ("email", _EMAIL, None),
    ("iban", _IBAN, iban_valid),
    ("card", _CARD, _is_card),
    ("ip", _IPV6, _is_ipv6),
    ("ip", _IPV4, None),
    ("phone", _PHONE, _is_phone),
)


def _valid_end(found: re.Match[str], valid: Callable[[str], bool] | None) -> int | None:
    """Where the personal data of a candidate ends: the whole match when there is no check,
    else the longest prefix ending at a word's end that passes it (a phone number followed
    by another number is one long candidate); None when none does."""
    text = found.group(0)
    if valid is None:
        return found.end()
    ends = [i + 1 for i, c in enumerate(text) if c.isalnum() and not text[i + 1 : i + 2].isalnum()]
    for end in reversed(ends):
        if valid(text[:end]):
            return found.start() + end
    return None


def _substitute(text: str, detector: Detector) -> str:
    """``text`` with every valid candidate of one detector replaced by its placeholder.

    Candidates may overlap (``7946 0958 4111 1111`` before the card ``4111 1111 1111
    1111``): after one that fails its check, the search goes on from its next character.
    """
    kind, regex, valid = detector
    parts: list[str] = []
    kept = position = 0
    while (found := regex.search(text, position)) is not None:
        end = _valid_end(found, valid)
        if end is None:
            position = found.start() + 1
            continue
        parts += [text[kept : found.start()], mark(kind)]
        kept = position = end
    return "".join(parts) + text[kept:] if parts else text


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedactSettings:
    """What to redact: one ``sqlflow_redact`` (the profile's, a model's, or both merged).

    Attributes:
        kinds: The built-in kinds to find in any value; None when not set (all of them).
        columns: Columns whose values are always redacted (compared without case).
        patterns: Python regular expressions whose matches are redacted.
    """

    kinds: tuple[str, ...] | None = None
    columns: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()

    @classmethod
    def check(cls, raw: Any, where: str = "sqlflow_redact") -> tuple[RedactSettings, list[str]]:
        """Read a ``sqlflow_redact`` value without raising.

        Args:
            raw: The value (None: not set).
            where: How messages name the setting.

        Returns:
            The settings (defaults in place of bad values) and one line per problem, each
            naming the key, the bad value and the fix.
        """
        if raw is None:
            return cls(), []
        if not isinstance(raw, Mapping):
            return cls(), [f"{where} {raw!r} must be a mapping. Fix: write {EXAMPLE}"]
        problems = [
            f"{where} has unknown key {key!r} (allowed: {', '.join(SETTING_KEYS)})."
            f" Fix: write {EXAMPLE}"
            for key in raw
            if key not in SETTING_KEYS
        ]
        kinds = None
        if raw.get("kinds") is not None:
            kinds = _string_list(raw["kinds"], f"{where}.kinds", problems)
            unknown = [k for k in kinds if k not in KINDS]
            if unknown:
                problems.append(
                    f"{where}.kinds {list(kinds)!r} names unknown kind(s) {unknown}. Fix: list"
                    f" some of {', '.join(KINDS)} ([] redacts none of them)"
                )
                kinds = tuple(k for k in kinds if k in KINDS)
        columns = _string_list(raw.get("columns"), f"{where}.columns", problems)
        patterns = _string_list(raw.get("patterns"), f"{where}.patterns", problems)
        good = []
        for pattern in patterns:
            problem = _pattern_problem(pattern)
            if problem:
                problems.append(
                    f"{where}.patterns entry {pattern!r} {problem}. Fix: write a Python regular"
                    " expression that matches the sensitive text, e.g. 'EMP-[0-9]{6}'"
                )
            else:
                good.append(pattern)
        return cls(kinds, columns, tuple(good)), problems

    @classmethod
    def parse(cls, raw: Any, where: str = "profile key sqlflow_redact") -> RedactSettings:
        """Read a ``sqlflow_redact`` value (the profile's).

        Raises:
            DbtConfigError: naming every problem and the fix.
        """
        settings, problems = cls.check(raw, where)
        if problems:
            raise DbtConfigError("; ".join(problems))
        return settings

    def merged(self, model: RedactSettings) -> RedactSettings:
        """These (the profile's) settings with a model's laid over them: columns and
        patterns of both; the model's ``kinds`` when it sets them."""
        return RedactSettings(
            kinds=model.kinds if model.kinds is not None else self.kinds,
            columns=_unique(self.columns + model.columns),
            patterns=_unique(self.patterns + model.patterns),
        )

    def redactor(self) -> Redactor:
        """The compiled :class:`Redactor` of these settings."""
        return Redactor(self)


def _string_list(value: Any, key: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    problems.append(
        f"{key} {value!r} must be a list of non-empty strings. Fix: write e.g. {EXAMPLE}"
    )
    return ()


def _pattern_problem(pattern: str) -> str | None:
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        return f"is not a valid regular expression ({e})"
    if compiled.fullmatch(""):
        return "matches the empty string (it would redact between every character)"
    return None


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# -- redacting ---------------------------------------------------------------------------------


class Redactor:
    """Replaces personal data in values and texts, as :class:`RedactSettings` say."""

    def __init__(self, settings: RedactSettings = RedactSettings()) -> None:
        self.settings = settings
        kinds = KINDS if settings.kinds is None else settings.kinds
        self._detectors = [d for d in DETECTORS if d[0] in kinds]
        self._patterns = [re.compile(p) for p in settings.patterns]
        self._columns = frozenset(c.lower() for c in settings.columns)

    @property
    def active(self) -> bool:
        """Whether anything is redacted at all."""
        return bool(self._detectors or self._patterns or self._columns)

    def listed(self, column: str) -> bool:
        """Whether ``column``'s values are always redacted."""
        return column.lower() in self._columns

    def text(self, text: str) -> str:
        """``text`` with every match of the user's patterns and the built-in kinds replaced."""
        for pattern in self._patterns:
            text = pattern.sub(PATTERN_MARK, text)
        for detector in self._detectors:
            text = _substitute(text, detector)
        return text

    def value(self, column: str, value: Any) -> Any:
        """A row value as messages may show it: :data:`COLUMN_MARK` for a listed column, a
        string or number redacted as text (a card number may be stored as a BIGINT), any
        other value (dates, booleans, NULL) unchanged."""
        if self.listed(column):
            return COLUMN_MARK
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            text = str(value)
            redacted = self.text(text)
            return value if redacted == text else redacted
        return value


DEFAULT = Redactor()
"""The redactor without user settings: every built-in kind."""

NOTHING = Redactor(RedactSettings(kinds=()))
"""The redactor that changes nothing (for text that holds no row values)."""
