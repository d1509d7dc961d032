"""Reading a snapshot file without trusting it: every byte is bounded before it is read, every
header field typed and bounded after the checksum.

A snapshot is data from another machine, or a file someone edited and re-checksummed: its
checksum catches damage, not forgery. So, in order:

1. the path must be a regular file no larger than :data:`MAX_FILE` (no FIFO, no device);
2. the zip members' sizes, and each array's ``.npy`` header (shape and dtype), are read and
   checked *before* an array is decompressed: a hostile header cannot make numpy allocate
   what it declares;
3. the arrays' memory — and what classifying and planning them will take — must fit in
   what this machine has (``check_memory``: :func:`hotremove.sim.memguard.check_plan_memory`);
4. the header's every field is typed and bounded (:class:`Header`, no coercion): block
   indexes unique, non-negative and small enough to be pfns, counts finite and non-negative,
   strings without control characters (they reach a terminal), at most so many mounts;
5. the checksum (required) must match the arrays.

Any failure is one line naming the file and the field (:class:`~snapshot.SnapshotError`).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from typing import Annotated, Any, BinaryIO, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
)

from hotremove.model.page import PAGE_SIZE

#: the format a snapshot file's header names (see :mod:`hotremove.realmachine.snapshot`)
FORMAT = "hotremove-snapshot/1"

#: the largest snapshot file read (compressed): a 16 TiB machine's is well below
MAX_FILE = 8 << 30
#: the largest header (JSON): thousands of blocks and mounts fit in a few MiB
MAX_HEADER = 16 << 20
#: the largest memory block (Linux uses 128 MiB to 2 GiB)
MAX_BLOCK_SIZE = 64 << 30
#: the most memory blocks (1 << 20 blocks of 128 MiB: 128 TiB)
MAX_BLOCKS = 1 << 20
#: the highest memory block index: its pfns must fit in 64 bits with room to spare
MAX_BLOCK_INDEX = 1 << 32

_NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"
Line = Annotated[str, StringConstraints(max_length=4096, pattern=_NO_CONTROL)]
Word = Annotated[str, StringConstraints(max_length=256, pattern=_NO_CONTROL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BlockFields(_Strict):
    index: StrictInt = Field(ge=0, lt=MAX_BLOCK_INDEX)
    state: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z-]{0,31}$")]
    valid_zones: Word
    removable: StrictBool | None = None
    node: StrictInt | None = Field(default=None, ge=0, lt=1 << 16)


class MountFields(_Strict):
    device: Line
    mountpoint: Line
    fstype: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")]
    options: list[Word] = Field(max_length=256)


class Header(_Strict):
    """Every field of a snapshot's header, typed and bounded."""

    format: str
    checksum: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    page_size: Literal[4096]
    block_size: StrictInt = Field(ge=PAGE_SIZE, le=MAX_BLOCK_SIZE)
    blocks: list[BlockFields] = Field(min_length=1, max_length=MAX_BLOCKS)
    mounts: list[MountFields] = Field(default_factory=list, max_length=4096)
    meminfo: dict[Literal["MemTotal", "MemFree"], Annotated[int, Field(ge=0, lt=1 << 48)]] = {}
    kernel: Word = ""
    taken: Word = ""
    source: Word = ""
    note: Line = ""

    @field_validator("block_size")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two (as /sys/devices/system/memory says)")
        return value

    @field_validator("blocks")
    @classmethod
    def _unique(cls, blocks: list[BlockFields]) -> list[BlockFields]:
        seen: set[int] = set()
        for block in blocks:
            if block.index in seen:
                raise ValueError(f"memory block {block.index} is listed twice")
            seen.add(block.index)
        return blocks


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).startswith(("function-", "literal[", "constrained-")):
            out += f".{part}" if out else str(part)
    return out


def validate_header(raw: Any) -> Header:
    """The header typed and bounded; a ValueError names the field."""
    if not isinstance(raw, dict):
        raise ValueError("the header is not a JSON object")
    if "checksum" not in raw:
        raise ValueError("checksum: missing (every snapshot carries one)")
    try:
        return Header.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = _where(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "string_pattern_mismatch":
            msg = "has characters a snapshot never holds (control characters)"
            if where.endswith(("state", "fstype", "checksum")):
                msg = f"not a valid {where.rsplit('.', 1)[-1]}"
        shown = repr(err.get("input"))
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        return_msg = f"{where}: {msg}" + (f" (got {shown})" if "input" in err else "")
        raise ValueError(return_msg) from None


# -- arrays ---------------------------------------------------------------------------------------
def _npy_header(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """The shape and dtype an ``.npy`` member declares, read without reading its data."""
    with zf.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f"{name}: unknown .npy version {version}")
    if fortran or dtype.hasobject:
        raise ValueError(f"{name}: not a plain array")
    return tuple(shape), dtype


def _array(zf: zipfile.ZipFile, name: str, shape: tuple[int, int], kinds: str) -> np.ndarray:
    """Member ``name``: checked to be ``shape`` of an unsigned integer dtype before its data
    is read (a declared shape is never allocated on trust)."""
    member = f"{name}.npy"
    declared, dtype = _npy_header(zf, member)
    if declared != shape:
        raise ValueError(f"{name}: shape {declared}, the header says {shape}")
    if dtype.kind not in kinds or dtype.itemsize > 8:
        raise ValueError(f"{name}: dtype {dtype} (expected unsigned integers)")
    expected = int(np.prod(shape)) * dtype.itemsize
    if zf.getinfo(member).file_size > expected + (1 << 16):
        raise ValueError(f"{name}: larger than its shape")
    with zf.open(member) as f:
        array = np.lib.format.read_array(f, allow_pickle=False)
    if array.shape != shape:
        raise ValueError(f"{name}: cut short")
    return array


def read_arrays(
    f: BinaryIO, check_memory: Any = None
) -> tuple[dict[str, Any], Header, np.ndarray, np.ndarray]:
    """(raw header, validated header, flags, counts) of an open snapshot file.
    ``check_memory(pages)`` is called once the shape is known and before the arrays are
    read: it refuses (raises) a snapshot this machine cannot plan."""
    try:
        with zipfile.ZipFile(f) as zf:
            names = set(zf.namelist())
            missing = {"header.npy", "flags.npy", "counts.npy"} - names
            if missing:
                what = ", ".join(sorted(m.removesuffix(".npy") for m in missing))
                raise ValueError(f"not a hotremove snapshot (no {what})")
            if zf.getinfo("header.npy").file_size > MAX_HEADER:
                raise ValueError(f"header: larger than {MAX_HEADER >> 20} MiB")
            with zf.open("header.npy") as member:
                header_bytes = np.lib.format.read_array(member, allow_pickle=False)
            if header_bytes.dtype != np.uint8 or header_bytes.ndim != 1:
                raise ValueError("header: not UTF-8 JSON bytes")
            raw = json.loads(header_bytes.tobytes().decode("utf-8"), parse_constant=_no_nan)
            _check_format(raw)
            header = validate_header(raw)
            shape = (len(header.blocks), header.block_size // PAGE_SIZE)
            if check_memory is not None:
                check_memory(shape[0] * shape[1])
            flags = _array(zf, "flags", shape, "u").astype(np.uint64, copy=False)
            counts = _array(zf, "counts", shape, "u")
            if counts.dtype.itemsize > 4:
                counts = np.minimum(counts, 2**32 - 1).astype(np.uint32)
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeDecodeError, OSError) as exc:
        raise ValueError(f"not a hotremove snapshot, or damaged ({_one_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"header: not JSON ({_one_line(exc)})") from None
    return raw, header, flags, counts


def _no_nan(name: str) -> Any:
    raise ValueError(f"header: {name} is not a number a snapshot holds")


def _check_format(raw: Any) -> None:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ValueError(f"unknown snapshot format (expected {FORMAT})")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 120 else text[:117] + "..."


_PRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters shown as escapes (what reaches a terminal)."""
    return _PRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


__all__ = [
    "FORMAT",
    "MAX_FILE",
    "BlockFields",
    "Header",
    "MountFields",
    "printable",
    "read_arrays",
    "validate_header",
]
