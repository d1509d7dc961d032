"""Which operations tables the files of a filesystem type get, asked of the type itself.

The core keeps no table of its own: a type answers :meth:`FilesystemType.aops` for one mount
(its options) in one kernel, so "every table a type's files may get" is that question asked
for the type's default mount and for each option it knows, in each modelled kernel. The
loader's strategy probe, ``hotremove kernels``, ``new-plugin`` and the conformance kit ask
here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hotremove.fs.fstype import FilesystemType, ProbeConfig
from hotremove.kernels import KERNELS, Kernel
from hotremove.model.address_space import AddressSpaceOps


@dataclass(frozen=True)
class Table:
    """One table a type's files get: in which kernel, with which mount options."""

    ops: AddressSpaceOps
    fs_type: str  #: the type whose files get it (ext3 files get ext4's tables in 6.x)
    options: tuple[str, ...]  #: the first option set (in :func:`option_sets` order) that gives it
    kernel: str  #: the first kernel (in KERNELS order) that gives it


def option_sets(fs_type: FilesystemType) -> list[tuple[str, ...]]:
    """The mounts a type is asked about: its defaults, then each option it knows alone."""
    return [(), *((option,) for option in fs_type.options)]


def probe_config(fs_type: FilesystemType, options: tuple[str, ...] = ()) -> ProbeConfig:
    """A table of ``fs_type`` with ``options`` and the type's default block size."""
    return ProbeConfig(
        name="probe", type=fs_type.name, block_size=fs_type.default_block_size, options=options
    )


def tables_of(fs_type: FilesystemType, kernels: Iterable[Kernel] | None = None) -> dict[str, Table]:
    """Every table ``fs_type``'s files get in ``kernels`` (default: every modelled one), by
    name, in the order first met. A mount the type refuses (``validate``) or a question its
    ``aops`` cannot answer (it raises) gives no table: this is a survey, not a check."""
    out: dict[str, Table] = {}
    for options in option_sets(fs_type):
        cfg = probe_config(fs_type, options)
        try:
            fs_type.validate(cfg)
        except Exception:
            continue
        for kernel in kernels if kernels is not None else KERNELS.values():
            try:
                ops = fs_type.aops(cfg, kernel)
            except Exception:
                continue
            if isinstance(ops, AddressSpaceOps) and ops.name not in out:
                out[ops.name] = Table(ops, fs_type.name, options, kernel.version)
    return out


def all_tables(
    types: Iterable[FilesystemType], kernels: Iterable[Kernel] | None = None
) -> dict[str, AddressSpaceOps]:
    """Every table the files of ``types`` get in ``kernels``, by name (first type wins)."""
    kernels = list(kernels) if kernels is not None else None
    out: dict[str, AddressSpaceOps] = {}
    for fs_type in types:
        for name, table in tables_of(fs_type, kernels).items():
            out.setdefault(name, table.ops)
    return out


def mounted_by(types: Mapping[str, FilesystemType], kernel: Kernel) -> dict[str, list[str]]:
    """For each type whose files get another family's tables in ``kernel`` (ext3 images in
    Linux ≥ 4.3 get ext4's): the tables they get. Reports say so as a rule of the kernel."""
    out: dict[str, list[str]] = {}
    for name, fs_type in types.items():
        tables = tables_of(fs_type, [kernel])
        if tables and any(t.ops.fs_type != name for t in tables.values()):
            out[name] = sorted(tables)
    return out


__all__ = ["Table", "all_tables", "mounted_by", "option_sets", "probe_config", "tables_of"]
