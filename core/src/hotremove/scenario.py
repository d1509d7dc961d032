"""Scenario files (TOML, schema v1): what machine to build, what to remove, how.

Validation is strict: an unknown key or an impossible value is a :class:`ScenarioError` whose
one-line message names the key (``filesystem[1].block_size: ext2 images have blocks of 1024,
2048, 4096 bytes``). A filesystem's type, block size and options are its plugin's to judge
(:class:`hotremove.fs.fstype.FilesystemType`); a type whose tools are missing on this host is
refused when a run builds it, not here (a scenario may be checked on another machine).
The work a scenario can demand is bounded (memory, image sizes, file counts) so hostile input
cannot make a run hang or exhaust the machine.
"""

from __future__ import annotations

import re
import tomllib
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from hotremove.errors import ScenarioError, did_you_mean
from hotremove.fs import registry
from hotremove.kernels import DEFAULT_KERNEL, KERNELS, get_kernel
from hotremove.model.cost import PRESETS
from hotremove.model.migrate_mode import DEFAULT_POLICY, MigrateMode
from hotremove.model.page import PAGE_SIZE
from hotremove.sim.faults import FaultSettings
from hotremove.tomltext import TomlError, parse_toml

#: simulated RAM. Its frames cost this machine what is used of them (plus ~110 B of mem_map
#: a frame); whether a run fits is the memory guard's call (hotremove.sim.memguard)
MAX_MEMORY = 64 << 30
MAX_IMAGE = 8 << 30  # one filesystem image
MAX_FILES = 200_000

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]{1,24})(?:\.([0-9]{1,24}))?\s*([a-zA-Z]{0,3})\s*$", re.ASCII)
#: no size hotremove meets is larger (4 EiB): a bigger one is a typo or hostile input, and
#: must be refused before it becomes a float (inf) or a huge allocation
MAX_SIZE = 1 << 62


def parse_size(value: Any) -> int:
    """``"512MiB"`` / ``"1 GiB"`` / ``"1.5GiB"`` / ``4096`` → bytes: ASCII digits, at most
    :data:`MAX_SIZE`, a whole number of bytes (no float on the way: no overflow, no NaN)."""
    if isinstance(value, bool):
        raise ValueError('must be a size such as "64MiB" or a number of bytes')
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must not be negative")
        if value > MAX_SIZE:
            raise ValueError(f"{value} bytes is more than any size hotremove handles (4 EiB)")
        return value
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match and match.group(3).lower() in _UNITS:
            whole, frac, unit = match.group(1), match.group(2) or "", match.group(3).lower()
            size = Fraction(int(whole + frac), 10 ** len(frac)) * _UNITS[unit]
            if size.denominator != 1:
                raise ValueError(f"{value!r} is not a whole number of bytes")
            if size > MAX_SIZE:
                raise ValueError(f"{value!r} is more than any size hotremove handles (4 EiB)")
            return int(size)
        shown = value if len(value) <= 40 else value[:37] + "..."
        raise ValueError(f'{shown!r} is not a size (use e.g. "64MiB", "1GiB" or bytes)')
    raise ValueError(f'{value!r} is not a size (use e.g. "64MiB", "1GiB" or bytes)'[:200])


Size = Annotated[int, BeforeValidator(parse_size)]


class _Strict(BaseModel):
    # strict: TOML gives each key its type; "16", true or 1.0 where an integer belongs is a
    # typo the user should hear about, not a value to coerce
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class MemoryConfig(_Strict):
    size: Size = 512 << 20
    block_size: Size = 128 << 20

    @model_validator(mode="after")
    def _shape(self) -> MemoryConfig:
        if self.block_size <= 0 or self.block_size % PAGE_SIZE:
            raise ValueError(f"block_size: must be a positive multiple of {PAGE_SIZE}")
        if self.size <= 0 or self.size % self.block_size:
            raise ValueError("size: must be a positive multiple of memory.block_size")
        if self.size > MAX_MEMORY:
            raise ValueError(f"size: at most {MAX_MEMORY >> 30}GiB can be simulated")
        return self


def named_defaults() -> dict[str, Any]:
    """The defaults that name a filesystem type (``scenarios/defaults.toml``): the core names
    none in its code."""
    text = resources.files("hotremove").joinpath("scenarios", "defaults.toml").read_text("utf-8")
    return tomllib.loads(text)


#: ``filesystem.type`` of a table that gives none
DEFAULT_FS_TYPE = str(named_defaults()["filesystem"]["type"])
#: the type of a snapshot's page cache when the snapshot names no mounted filesystem
SNAPSHOT_FS_TYPE = str(named_defaults()["snapshot"]["type"])


class FilesystemConfig(_Strict):
    """One ``[[filesystem]]`` table. ``type`` is any type an installed plugin registers
    (:mod:`hotremove.fs.registry`); the type says which ``block_size`` (default: its own),
    sizes and ``options`` it accepts (``FilesystemType.validate``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    type: str = Field(default=DEFAULT_FS_TYPE, pattern=r"^[a-z0-9_]{1,32}$")
    block_size: int = 1024  # a table without one gets its type's default_block_size
    size: Size = 64 << 20
    files: int = Field(default=64, ge=0, le=MAX_FILES)
    file_size: Size = 64 << 10
    options: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _type_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and "block_size" not in data:
            name = data.get("type", DEFAULT_FS_TYPE)
            try:
                fs_type = registry.known(name) if isinstance(name, str) else None
            except ValueError:
                fs_type = None  # named by the checks below
            if fs_type is not None:
                data = {**data, "block_size": fs_type.default_block_size}
        return data

    @model_validator(mode="after")
    def _by_type(self) -> FilesystemConfig:
        if not 1 << 20 <= self.size <= MAX_IMAGE:
            raise ValueError(f"size: must be between 1MiB and {MAX_IMAGE >> 30}GiB")
        twice = next((o for i, o in enumerate(self.options) if o in self.options[:i]), None)
        if twice is not None:  # twice would silently be once: say so instead
            raise ValueError(f"options: {twice!r} is given twice")
        fs_type = registry.known(self.type)
        try:
            fs_type.validate(self)
        except ValueError:
            raise
        except Exception as exc:  # a plugin's bug: still one line, naming the type
            raise ValueError(
                f"type: the {self.type} type's validate failed: {type(exc).__name__}: {exc}"
            ) from None
        if self.block_size <= 0 or PAGE_SIZE % self.block_size:
            raise ValueError(
                f"block_size: the simulated page cache takes blocks that divide {PAGE_SIZE} "
                f"bytes (got {self.block_size})"
            )
        data_bytes = self.files * self.file_size
        if data_bytes > self.size:
            raise ValueError(
                f"files: {self.files} files of {self.file_size} bytes do not fit in "
                f"{self.size} bytes"
            )
        return self

    @property
    def data_mode(self) -> str | None:
        """The journal's data mode a mount of this table ends up in (``ordered``,
        ``writeback``, ``journal``), as its type says; None: no such modes."""
        try:
            return registry.known(self.type).data_mode(self)
        except ValueError:  # a type made known only for a while (registry.using)
            return next((o[5:] for o in self.options if o.startswith("data=")), None)


#: seeds are numpy SeedSequence entropy: a non-negative integer of at most 64 bits
MAX_SEED = (1 << 64) - 1


class WorkloadConfig(_Strict):
    seed: int = Field(default=1, ge=0, le=MAX_SEED)
    cached: float = Field(default=1.0, ge=0.0, le=1.0)
    dirty: float = Field(default=0.3, ge=0.0, le=1.0)
    dirty_buffers: Literal["partial", "whole"] = "partial"
    #: simulated seconds the dirtying writes take, file after file in equal steps: jbd2's
    #: commit timer and the flusher run in between (0: every write at once)
    write_seconds: float = Field(default=0.0, ge=0.0, le=86_400.0)
    #: share of dirty page-cache pages whose writeback is in flight (PG_writeback, BH_Lock)
    writeback: float = Field(default=0.0, ge=0.0, le=1.0)
    #: share of cached pages with buffers where another task holds one buffer's lock
    locked: float = Field(default=0.0, ge=0.0, le=1.0)
    #: page-cache pages someone holds an extra reference on (get_page, a pinned read) ...
    pinned: int = Field(default=0, ge=0, le=100_000)
    #: ... and the number of migration passes after which they let go (0: never)
    pin_release: int = Field(default=2, ge=0, le=1000)
    anon: Size = 0
    #: share of anonymous pages that also sit in the swap cache
    swapcache: float = Field(default=0.0, ge=0.0, le=1.0)
    #: share of anonymous pages that are mlocked (PG_mlocked, PG_unevictable)
    mlocked: float = Field(default=0.0, ge=0.0, le=1.0)
    #: anonymous 2 MiB transparent huge pages (folios of 512 frames)
    thp: int = Field(default=0, ge=0, le=4096)
    #: reserved / slab / page-table pages (in turn) that can never move ...
    unmovable: int = Field(default=0, ge=0, le=1_000_000)
    #: ... placed only in these memory blocks (empty: anywhere, by placement)
    unmovable_blocks: list[int] = []
    placement: Literal["spread", "fill"] = "spread"


class RemoveConfig(_Strict):
    blocks: list[int] = [1]
    #: the order of the per-block offlines (one ``offline_pages`` call each): ascending
    #: (``offline_and_remove_memory``'s), descending, or listed (as ``blocks`` are written)
    order: Literal["ascending", "descending", "listed"] = "ascending"
    mode: Literal["async", "sync_light", "sync"] = MigrateMode.SYNC.value
    strategy: str = Field(default=DEFAULT_POLICY, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    checks: bool = True
    #: rounds of migrate_pages before giving up, in kernels that give up (the 2004 seed)
    max_rounds: int = Field(default=3, ge=1, le=100)
    #: simulated seconds one block's offline may take before the user's signal stops it
    #: (-EINTR): ``timeout 120`` around each write of ``offline`` to ``memoryN/state``
    timeout: float = Field(default=120.0, gt=0.0, le=86_400.0)
    #: simulated seconds from the workload's writes to the start of the offline; background
    #: work (jbd2's commit timer, the flusher) runs in between
    start: float = Field(default=10.0, ge=0.0, le=86_400.0)


class KernelConfig(_Strict):
    """Which kernel's offline to simulate, and its writeback sysctls (vm.*)."""

    version: str = DEFAULT_KERNEL
    #: vm.dirty_writeback_centisecs: the flusher wakes this often (0: periodic writeback off)
    dirty_writeback_centisecs: int = Field(default=500, ge=0, le=8_640_000)
    #: vm.dirty_expire_centisecs: dirty data older than this is written by the flusher
    dirty_expire_centisecs: int = Field(default=3000, ge=0, le=8_640_000)

    @model_validator(mode="after")
    def _known(self) -> KernelConfig:
        if self.version not in KERNELS:
            raise ValueError(
                f"version: unknown kernel {self.version!r} (modelled: {', '.join(KERNELS)})"
            )
        return self


class DeviceConfig(_Strict):
    preset: str = "ide-2004"

    @model_validator(mode="after")
    def _known(self) -> DeviceConfig:
        if self.preset not in PRESETS:
            raise ValueError(
                f"preset: unknown preset {self.preset!r} (choose from {', '.join(PRESETS)})"
            )
        return self


class FaultsConfig(_Strict):
    """Injected faults (see hotremove.sim.faults); all off by default."""

    writeback_eio: float = Field(default=0.0, ge=0.0, le=1.0)
    enomem_after: int | None = Field(default=None, ge=0)
    plugin_raises: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    def settings(self) -> FaultSettings:
        """The engine's plain view of these settings."""
        return FaultSettings(self.writeback_eio, self.enomem_after, self.plugin_raises)


class Scenario(_Strict):
    memory: MemoryConfig = MemoryConfig()
    filesystem: list[FilesystemConfig] = Field(default_factory=list, max_length=64)
    workload: WorkloadConfig = WorkloadConfig()
    remove: RemoveConfig = RemoveConfig()
    device: DeviceConfig = DeviceConfig()
    faults: FaultsConfig = FaultsConfig()
    kernel: KernelConfig = KernelConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [fs.name for fs in self.filesystem]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"filesystem: name {name!r} is used twice")
        nr_blocks = self.memory.size // self.memory.block_size
        if not self.remove.blocks:
            raise ValueError("remove.blocks: name at least one memory block")
        for b in self.remove.blocks:
            if not 0 <= b < nr_blocks:
                raise ValueError(
                    f"remove.blocks: block {b} does not exist (memory has blocks 0-{nr_blocks - 1})"
                )
        if len(set(self.remove.blocks)) != len(self.remove.blocks):
            twice = sorted({b for b in self.remove.blocks if self.remove.blocks.count(b) > 1})
            raise ValueError(f"remove.blocks: block {twice[0]} is named twice")
        if len(set(self.remove.blocks)) == nr_blocks:
            raise ValueError("remove.blocks: cannot remove every memory block")
        cached_bytes = sum(
            -(-fs.file_size // PAGE_SIZE) * PAGE_SIZE * fs.files for fs in self.filesystem
        )
        wl = self.workload
        need = int(cached_bytes * wl.cached) + wl.anon + (wl.thp << 21)
        need += wl.unmovable * PAGE_SIZE
        for b in wl.unmovable_blocks:
            if not 0 <= b < nr_blocks:
                raise ValueError(
                    f"workload.unmovable_blocks: block {b} does not exist (memory has blocks "
                    f"0-{nr_blocks - 1})"
                )
        if need > self.memory.size:
            raise ValueError(
                f"memory.size: the workload needs {need >> 20}MiB of page frames but memory "
                f"is {self.memory.size >> 20}MiB"
            )
        return self

    def offline_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """The engine's ``offline()`` keyword arguments this scenario asks for — the one bridge
        from a scenario to the engine. ``overrides`` replace single arguments."""
        rm = self.remove
        kwargs: dict[str, Any] = {
            "mode": MigrateMode(rm.mode),
            "policy": rm.strategy,
            "checks": rm.checks,
            "max_rounds": rm.max_rounds,
            "faults": self.faults.settings(),
            "fault_seed": self.workload.seed,
            "kernel": get_kernel(self.kernel.version),
            "timeout": rm.timeout,
            "start": rm.start,
            "order": rm.order,
        }
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return kwargs

    def with_overrides(self, **sections: dict[str, Any]) -> Scenario:
        """A copy with some keys replaced (command-line flags win over the file)."""
        data = self.model_dump()
        for section, values in sections.items():
            data[section].update({k: v for k, v in values.items() if v is not None})
        if data["faults"] == FaultsConfig().model_dump():
            del data["faults"]
        return validate(data)


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("int", "str", "float", "bool") and not part.startswith(
            ("function-", "literal[")
        ):
            out += f".{part}" if out else part
    return out


def _suggest(loc: tuple[int | str, ...]) -> str:
    """ " (did you mean 'x'?)" for an unknown key, from the keys its section knows."""
    model: Any = Scenario
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return ""
        annotation = field.annotation
        model = getattr(annotation, "__args__", (annotation,))[0]
        if not isinstance(model, type) or not issubclass(model, BaseModel):
            return ""
    return did_you_mean(str(loc[-1]), model.model_fields)


def _message(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = _location(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        return f"{where}: unknown key{_suggest(err['loc'])}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.startswith("literal") or kind == "enum":
        msg = f"must be {msg.removeprefix('Input should be ')} (got {err['input']!r})"
    # a model validator reports "key: problem" for keys inside its section
    if ": " in msg and msg.split(": ", 1)[0].replace(".", "").replace("_", "").isalnum():
        head, rest = msg.split(": ", 1)
        if "." not in head and where:
            return f"{where}.{head}: {rest}"
        return f"{head}: {rest}"
    return f"{where}: {msg}" if where else msg


def validate(data: dict[str, Any]) -> Scenario:
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_message(exc)) from None


def load(path: Path | str) -> Scenario:
    """Read and validate a scenario file; every problem is a one-line ScenarioError."""
    from hotremove.fileio import FileRefused, read_text

    path = Path(path)
    try:
        text = read_text(path, what="scenario file")
    except FileRefused as exc:  # a bounded read of a regular file only: no FIFO, no /dev/zero
        raise ScenarioError(str(exc)) from None
    return loads(text, source=str(path))


def loads(text: str, source: str = "<scenario>") -> Scenario:
    try:
        data = parse_toml(text)
    except TomlError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    if not data:
        raise ScenarioError(
            f"{source}: empty scenario: describe at least a [[filesystem]] (see "
            "`uv run hotremove scenario --example`)"
        )
    return validate(data)
