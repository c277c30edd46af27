"""Numbers for the distinct values of a dataset, so that arrays can hold a line's value.

The reader hands out one object per distinct value (`dnsbl.rbldnsd.data`), so values are
told apart by identity; the first value seen is number 0, and lines in a row mostly share
theirs, which is asked first.
"""

from __future__ import annotations

from array import array
from typing import Generic, TypeVar

V = TypeVar("V")  # a value as read (None: an exclusion)
_NONE = object()  # no value seen yet


class ValueNumbers(Generic[V]):
    """The distinct values given so far, numbered in the order first seen."""

    def __init__(self) -> None:
        self.values: list[V | None] = []  # by number
        self._numbers: dict[int, int] = {}  # id(value) -> number
        self._last: object = _NONE
        self._last_number = 0

    def number(self, value: V | None) -> int:
        """The number of `value` (a new one for a value not seen before)."""
        if value is self._last:
            return self._last_number
        number = self._numbers.get(id(value))
        if number is None:
            number = self._numbers[id(value)] = len(self.values)
            self.values.append(value)
        self._last, self._last_number = value, number
        return number


def with_number(numbers: array[int] | None, before: int, number: int) -> array[int] | None:
    """`numbers` (the value numbers of `before` entries; None while all are 0) with `number`
    appended: made on the first number that is not 0, two bytes a number until one is past
    65,535, four bytes after."""
    if numbers is None:
        if not number:
            return None
        numbers = array("H", [0]) * before
    if number > 0xFFFF and numbers.typecode == "H":
        numbers = array("I", numbers)
    numbers.append(number)
    return numbers
