"""Things looked up by name, with "did you mean" for names that are not there.

Models, distillation methods, pruning criteria, datasets, calibration methods, energy meters and
backends are each a :class:`Registry`: one place that holds the names, registers new ones (as a
decorator or a call) and turns an unknown name into an :class:`~edgec.errors.EdgecError` that names the
closest valid one and lists the rest. :func:`did_you_mean` is the same suggestion for any list of
names (recipe fields, module names, model params).

Example:
    >>> criteria = Registry("pruning criterion")
    >>> @criteria.register("taylor")
    ... def taylor(model, groups, batches): ...
    >>> criteria.get("taylr")
    Traceback (most recent call last):
    edgec.errors.RecipeError: unknown pruning criterion 'taylr'
      -> did you mean 'taylor'? valid: taylor
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from edgec.errors import EdgecError, RecipeError

T = TypeVar("T")

CUTOFF = 0.5  # difflib similarity a suggestion needs (0.5 catches one or two typos in short names)


def closest(word: object, choices: Iterable[str], *, cutoff: float = CUTOFF) -> str | None:
    """The valid name most like ``word`` (difflib's ratio >= ``cutoff``), or None.

    Example:
        >>> closest("mnsit", ["digits", "mnist"])
        'mnist'
    """
    found = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: object, choices: Iterable[str], *, cutoff: float = CUTOFF) -> str:
    """``"did you mean 'x'? "`` for the closest valid name, or ``""`` when none is close.

    Example:
        >>> did_you_mean("temprature", ["alpha", "temperature"])
        "did you mean 'temperature'? "
    """
    best = closest(word, choices, cutoff=cutoff)
    return f"did you mean '{best}'? " if best else ""


class Registry(Generic[T]):
    """Named objects of one ``kind`` ("distillation method", "dataset", ...).

    ``error`` is the :class:`EdgecError` type an unknown name raises (RecipeError by default: names
    come from recipes); ``field`` is the recipe field that names it, shown in the message;
    ``aliases`` maps other spellings to registered names; ``normalize`` canonicalises what users
    type (e.g. lower-case) before the lookup; ``on_unknown(name, suggestion, valid)`` builds the
    error for an unknown name where a caller's message has its own shape (``suggestion`` is the
    closest valid name or None).

    Example:
        >>> readers = Registry("dataset", error=DataError, field="data.name")
        >>> readers.register("digits", read_digits)
        >>> readers.get("digits") is read_digits
        True
    """

    def __init__(self, kind: str, *, error: type[EdgecError] = RecipeError, field: str | None = None,
                 aliases: Mapping[str, str] | None = None, normalize: Callable[[str], str] | None = None,
                 cutoff: float = CUTOFF,
                 on_unknown: Callable[[str, str | None, list[str]], EdgecError] | None = None) -> None:
        self.kind = kind
        self.error = error
        self.field = field
        self.aliases = dict(aliases or {})
        self.normalize = normalize
        self.cutoff = cutoff
        self.on_unknown = on_unknown
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None, *, replace: bool = False) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name`` (returns it), or, without ``obj``, return a decorator that does.

        Registering a second, different object under one name is a programming error (ValueError)
        unless ``replace``.
        """
        def add(item: T) -> T:
            if not replace and self._items.get(name, item) is not item:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return add if obj is None else add(obj)

    def unregister(self, name: str) -> None:
        """Remove ``name`` if registered (tests that register throwaway entries clean up with it)."""
        self._items.pop(name, None)

    def copy(self) -> Registry[T]:
        """An independent registry with the same settings and entries (tests register into a copy)."""
        new: Registry[T] = Registry(self.kind, error=self.error, field=self.field, aliases=self.aliases,
                                    normalize=self.normalize, cutoff=self.cutoff, on_unknown=self.on_unknown)
        new._items = dict(self._items)
        return new

    def names(self) -> list[str]:
        """Registered names, in the order they were registered."""
        return list(self._items)

    def canonical(self, name: object) -> str:
        """The registered name ``name`` stands for (after ``normalize`` and ``aliases``); raises if unknown."""
        key = self.normalize(str(name)) if self.normalize else name
        key = self.aliases.get(key, key) if isinstance(key, str) else key
        if isinstance(key, str) and key in self._items:
            return key
        raise self.unknown(name)

    def get(self, name: object) -> T:
        """The object registered as ``name``; :meth:`unknown`'s error if there is none."""
        return self._items[self.canonical(name)]

    def unknown(self, name: object) -> EdgecError:
        """The error for an unknown ``name``: what was asked for, the closest name, every valid one."""
        valid = self.names()
        key = self.normalize(str(name)) if self.normalize else str(name)
        best = closest(key, [*valid, *self.aliases], cutoff=self.cutoff)
        if self.on_unknown is not None:
            return self.on_unknown(str(name), best, valid)
        where = f" ({self.field})" if self.field else ""
        return self.error(f"unknown {self.kind} {name!r}{where}",
                          hint=(f"did you mean '{best}'? " if best else "") + f"valid: {', '.join(valid) or '(none)'}")

    def items(self) -> list[tuple[str, T]]:
        """``(name, object)`` pairs, in the order they were registered."""
        return list(self._items.items())

    def __contains__(self, name: object) -> bool:
        try:
            self.canonical(name)
        except EdgecError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
