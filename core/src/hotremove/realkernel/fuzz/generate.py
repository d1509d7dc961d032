"""Seeded random scenarios that a guest can mirror, for ``hotremove kernel fuzz``.

Agreement on hand-written examples says little about a simulator's fidelity: the examples and
the model come from the same hands. A case here is drawn by a numpy Generator seeded with
``(seed, case)``, so case *i* of seed *S* is the same scenario on every machine and after a
resume, whatever ``--cases`` says. What is drawn comes from the installed filesystem types
(their block sizes and mount options, kept only when the type's ``validate`` and its guest
mount on every requested kernel accept them), so a new plugin is fuzzed without a change here.

Kept small so that a guest run is short under TCG: a 512 MiB DIMM (four 128 MiB blocks), at
most ~96 MiB of page cache and ~1,200 dirtied pages (each dirtying ``write()`` is a ``dd`` of
15–40 ms in an emulated guest). ``workload.cached`` stays 1 and nothing is planted (no
anonymous memory, locked or pinned pages): the guest reads whole files and plants nothing, so
those would only be ``not_comparable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hotremove.errors import HotremoveError
from hotremove.scenario import Scenario, validate

#: the guest's DIMM: four x86-64 memory blocks
DIMM_BYTES = 512 << 20
BLOCK_BYTES = 128 << 20
DIMM_BLOCKS = DIMM_BYTES // BLOCK_BYTES
FILE_SIZES_KIB = (4, 8, 16, 32, 64, 128, 256, 512)
MAX_CACHE = 96 << 20
MAX_DIRTY_PAGES = 1200
#: draws before a case gives up finding a scenario every kernel asked for accepts
MAX_TRIES = 200


@dataclass(frozen=True)
class Case:
    """One generated scenario: its number, the generator's seed, the scenario's TOML tables."""

    number: int
    seed: int
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return f"case-{self.seed}-{self.number:05d}"

    def scenario(self) -> Scenario:
        return validate(self.data)


def _types(only: Sequence[str] | None = None) -> dict[str, Any]:
    from hotremove.fs.registry import installed_types

    return {n: t for n, t in sorted(installed_types().items()) if only is None or n in only}


def mountable_types(bundles: Sequence[Any]) -> list[str]:
    """The installed types every bundle's initramfs can mount: each module of the type's
    guest mount is among the bundle's (a bundle cached before a type was installed lacks
    its modules; ``kernel fetch`` into a new cache adds them)."""
    from hotremove.kernels import get_kernel
    from hotremove.realkernel.modules import module_name
    from hotremove.scenario import FilesystemConfig

    out = []
    for name, fs_type in _types().items():
        cfg = FilesystemConfig(name="probe", type=name)
        ok = True
        for bundle in bundles:
            have = {module_name(m) for m in bundle.modules}
            try:
                mount = fs_type.guest(cfg, get_kernel(bundle.version))
            except ValueError:
                continue
            ok = ok and all(module_name(m) in have for m in mount.modules)
        if ok:
            out.append(name)
    return out


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(len(items)))]


def _filesystem(
    rng: np.random.Generator, index: int, types: dict[str, Any], versions: Sequence[str]
) -> dict[str, Any]:
    """A filesystem of a type drawn uniformly, redrawn (same type) until the type's
    ``validate`` and its guest mount on every kernel in ``versions`` accept it, so that a
    type with options it cannot mirror (ext2's ``nobh``) is not drawn less often."""
    name = _pick(rng, list(types))
    for _ in range(MAX_TRIES):
        data = _fs_draw(rng, index, name, types[name])
        if _fs_ok(data, versions):
            return data
    raise HotremoveError(f"fuzz: no mirrorable {name} filesystem in {MAX_TRIES} draws")


def _fs_ok(data: dict[str, Any], versions: Sequence[str]) -> bool:
    from hotremove.fs.registry import resolve
    from hotremove.kernels import get_kernel
    from hotremove.scenario import FilesystemConfig

    try:
        cfg = FilesystemConfig.model_validate(data)
        for version in versions:
            resolve(cfg.type).guest(cfg, get_kernel(version))
    except (ValueError, HotremoveError):
        return False
    return True


def _fs_draw(rng: np.random.Generator, index: int, name: str, fs_type: Any) -> dict[str, Any]:
    options = sorted(fs_type.options)
    chosen = [o for o in options if rng.random() < min(0.5, 1 / max(len(options), 1))]
    file_size = _pick(rng, FILE_SIZES_KIB) << 10
    files = int(rng.integers(1, 97))
    files = max(1, min(files, (MAX_CACHE // 2) // file_size))
    data = files * file_size
    size = max(fs_type.min_size, int(data * 1.3) + (24 << 20))
    size = -(-size // (1 << 20)) << 20
    return {
        "name": f"fs{index}",
        "type": name,
        "block_size": int(_pick(rng, fs_type.block_sizes)),
        "size": f"{size >> 20}MiB",
        "files": files,
        "file_size": f"{file_size >> 10}KiB",
        "options": chosen,
    }


def draw(
    rng: np.random.Generator, types: dict[str, Any], versions: Sequence[str]
) -> dict[str, Any]:
    """One scenario's tables (each filesystem checked, the whole not yet)."""
    nfs = int(_pick(rng, (1, 1, 1, 2, 2, 3)))
    filesystems = [_filesystem(rng, i, types, versions) for i in range(nfs)]
    pages = sum(
        fs["files"] * -(-int(fs["file_size"].removesuffix("KiB")) // 4) for fs in filesystems
    )
    dirty = round(float(rng.uniform(0.0, 0.6)), 2)
    dirty = min(dirty, round(MAX_DIRTY_PAGES / max(pages, 1), 2))
    nblocks = int(rng.integers(1, DIMM_BLOCKS + 1))
    blocks = sorted(int(b) for b in rng.choice(DIMM_BLOCKS, size=nblocks, replace=False))
    order = _pick(rng, ("ascending", "descending", "listed"))
    if order == "listed":
        blocks = [int(b) for b in rng.permutation(blocks)]
    if rng.random() < 0.3:  # periodic writeback on: the flusher's period and the expiry
        kernel = {
            "dirty_writeback_centisecs": int(_pick(rng, (100, 300, 500))),
            "dirty_expire_centisecs": int(_pick(rng, (300, 1000, 3000))),
        }
    else:
        kernel = {"dirty_writeback_centisecs": 0, "dirty_expire_centisecs": 360_000}
    return {
        "memory": {"size": f"{DIMM_BYTES >> 20}MiB", "block_size": f"{BLOCK_BYTES >> 20}MiB"},
        "filesystem": filesystems,
        "workload": {
            "seed": int(rng.integers(1, 1 << 31)),
            "dirty": dirty,
            "dirty_buffers": _pick(rng, ("partial", "whole")),
            "placement": "fill",
        },
        "remove": {
            "blocks": blocks,
            "order": order,
            "timeout": int(_pick(rng, (10, 20))),
            # the time between the last write and the offline: the guest sleeps this long
            "start": int(_pick(rng, (0, 0, 2, 5, 10))),
        },
        "kernel": kernel,
    }


def accepted(data: dict[str, Any], versions: Sequence[str]) -> Scenario | None:
    """The scenario when ``scenario check`` accepts it and a guest of every version can
    mirror it; else None."""
    from hotremove.realkernel.run import check_mirrorable

    try:
        scn = validate(data)
        for version in versions:
            check_mirrorable(scn, version)
    except HotremoveError:
        return None
    return scn


def generate(
    seed: int, number: int, versions: Sequence[str], types: Sequence[str] | None = None
) -> Case:
    """Case ``number`` of ``seed``: the first draw of its own Generator that every kernel in
    ``versions`` can mirror (``types``: only these filesystem types; default every
    installed one)."""
    rng = np.random.default_rng([seed, number])
    types = _types(types)
    for _ in range(MAX_TRIES):
        data = draw(rng, types, versions)
        if accepted(data, versions) is not None:
            return Case(number, seed, data)
    raise HotremoveError(f"fuzz: no mirrorable scenario in {MAX_TRIES} draws (case {number})")


def cases(
    seed: int, count: int, versions: Sequence[str], types: Sequence[str] | None = None
) -> list[Case]:
    return [generate(seed, i, versions, types) for i in range(count)]
