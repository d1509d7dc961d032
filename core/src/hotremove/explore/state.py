"""The explorer's saved state: put a machine back exactly as it was, in place, between two
schedules.

Building a machine runs the filesystems' own tools (mkfs, block maps); a schedule runs in
milliseconds. So the explorer
builds once, records the state of every object reachable from the machine (pages, buffers,
mappings, journals, the frames' bytes, the golden model …) and, before each schedule, writes
that state back into the *same* objects — identities are kept, so the closures the workload
registered (``machine.waiters``, ``machine.daemons``) keep pointing at the right pages — and
rewrites the image files with their pristine bytes.
"""

from __future__ import annotations

import enum
import types
from array import array
from pathlib import Path
from typing import Any

import numpy as np

from hotremove.model import hostmem

_ATOMIC = (
    int,
    float,
    complex,
    str,
    bytes,
    bool,
    type(None),
    enum.Enum,
    Path,
    type,
    types.ModuleType,
    types.BuiltinFunctionType,
    range,
)


def _slots(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.extend([slots] if isinstance(slots, str) else slots)
    return [n for n in names if n not in ("__dict__", "__weakref__")]


class SavedState:
    """The recorded state of an object graph (see module doc)."""

    def __init__(self, root: Any, images: list[Path] | None = None) -> None:
        self.entries: list[tuple[str, Any, Any]] = []
        self.images = {path: path.read_bytes() for path in images or []}
        seen: set[int] = set()
        stack = [root]
        while stack:
            obj = stack.pop()
            if isinstance(obj, _ATOMIC) or id(obj) in seen:
                continue
            seen.add(id(obj))
            self._record(obj, stack)

    def _record(self, obj: Any, stack: list[Any]) -> None:
        add = self.entries.append
        if isinstance(obj, np.ndarray):
            add(("array", obj, obj.copy()))
        elif isinstance(obj, bytearray):
            add(("bytearray", obj, bytes(obj)))
        elif isinstance(obj, array):  # the allocator's free lists
            add(("pyarray", obj, array(obj.typecode, obj)))
        elif isinstance(obj, list):
            add(("list", obj, list(obj)))
            stack.extend(obj)
        elif isinstance(obj, dict):
            add(("dict", obj, dict(obj)))
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, set):
            add(("set", obj, set(obj)))
            stack.extend(obj)
        elif isinstance(obj, tuple | frozenset):
            stack.extend(obj)
        elif isinstance(obj, types.FunctionType):
            cells = obj.__closure__ or ()
            values = []
            for cell in cells:
                try:
                    values.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    values.append(_EMPTY)
            add(("closure", cells, values))
            stack.extend(v for v in values if v is not _EMPTY)
        elif isinstance(obj, types.MethodType):
            stack.append(obj.__self__)
            stack.append(obj.__func__)
        else:
            state: dict[str, Any] = {}
            if hasattr(obj, "__dict__"):
                state.update(obj.__dict__)
                add(("dict_attrs", obj, dict(obj.__dict__)))
            slots = _slots(type(obj))
            if slots:
                values = {name: getattr(obj, name) for name in slots if hasattr(obj, name)}
                add(("slots", obj, values))
                state.update(values)
            stack.extend(state.values())

    def restore(self) -> None:
        """Write the recorded state back into the same objects, and the images' bytes."""
        hostmem.drain()  # no frame given back late, over the bytes written back here
        setattr_ = object.__setattr__
        for kind, obj, state in self.entries:
            if kind == "slots":
                for name, value in state.items():
                    setattr_(obj, name, value)
            elif kind == "dict_attrs":
                attrs = obj.__dict__
                attrs.clear()
                attrs.update(state)
            elif kind == "list":
                obj[:] = state
            elif kind == "dict":
                obj.clear()
                obj.update(state)
            elif kind == "array":
                obj[...] = state
            elif kind in ("bytearray", "pyarray"):
                obj[:] = state
            elif kind == "set":
                obj.clear()
                obj.update(state)
            elif kind == "closure":
                for cell, value in zip(obj, state, strict=True):
                    if value is not _EMPTY:
                        cell.cell_contents = value
        for path, data in self.images.items():
            with open(path, "r+b") as image:
                image.write(data)
                image.truncate()


_EMPTY = object()
