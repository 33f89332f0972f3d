"""Frozen records without :mod:`dataclasses`, for the modules a cold read imports.

A new process reading a stored result (``from jobledger.jobs import X; X.result()``)
should cost little more than reading the row and the bytes by hand. Importing
:mod:`dataclasses` loads :mod:`inspect` (with :mod:`ast`, :mod:`dis`, :mod:`tokenize`),
and every frozen dataclass generates and compiles its methods when its module loads:
together about a fifth of such a read. So the records on that path (the registry's
:class:`~jobledger.registry.JobRecord`, :class:`~jobledger.registry.BlobRef` and
:class:`~jobledger.registry.ServiceRecord`, the store's, and
:class:`~jobledger.paths.Paths`) derive from :class:`Frozen`: each declares its fields
as annotations and sets them in a written-out ``__init__``; equality, hashing,
``repr`` and immutability come from here, as a frozen dataclass has them, and
:func:`replace` is :func:`dataclasses.replace` for them (``copy.replace`` too, from
Python 3.13). Records off that path stay dataclasses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing (see docs/architecture.md)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, TypeVar

    F = TypeVar("F", bound="Frozen")

__all__ = ["Frozen", "replace"]


class Frozen:
    """A frozen record: its fields are its class's annotations, in order.

    A subclass's ``__init__`` sets them all at once, ``self.__dict__.update(...)``;
    afterwards assigning or deleting an attribute raises ``AttributeError``.
    Two records are equal when they are of the same class with equal fields; the hash
    is the fields' hash (so a record holding a dict is unhashable, as a dataclass is).
    """

    _fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields = tuple(cls.__annotations__)

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Frozen) and type(other) is type(self):
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __replace__(self: F, /, **changes: Any) -> F:
        return replace(self, **changes)


def replace(record: F, /, **changes: Any) -> F:
    """A copy of *record* with some fields changed, as :func:`dataclasses.replace`.

    :raises TypeError: naming a field the record does not have.
    """
    unknown = sorted(set(changes) - set(record._fields))
    if unknown:
        raise TypeError(f"{type(record).__qualname__} has no field {', '.join(unknown)}")
    values = {name: getattr(record, name) for name in record._fields}
    make: Callable[..., F] = type(record)
    return make(**{**values, **changes})
