"""``FilesystemTypeSuite``: the round trip every filesystem type plugin must pass, as a base
class — what :class:`~hotremove.testing.conformance.ConformanceSuite` is for strategies.

A plugin's test module subclasses it with a few lines::

    from hotremove.testing.fskit import FilesystemTypeSuite

    class TestMyfsType(FilesystemTypeSuite):
        fs_type = "myfs"                     # the registered type's name
        plugin = "myfs"                      # optional: the plugin that must register it
        configs = ({}, {"block_size": 1024, "options": ["dax"]})   # tables to try

and pytest runs, for every config, on a real image made by the type's own tools:

* the image holds the files: ``map_files`` gives each file's size and as many blocks as the
  size needs, and reading the raw image at those blocks gives the file's bytes;
* ``read_files`` gives every file back, byte for byte, and ``check`` is clean;
* one data byte damaged on the image is noticed, by ``read_files`` or by ``check``;
* ``validate`` refuses an unknown option and a block size the type does not have, each with
  a message that names its key (``options: …``, ``block_size: …``);
* ``aops`` answers with an :class:`~hotremove.model.address_space.AddressSpaceOps` in every
  modelled kernel, and ``guest`` with a :class:`~hotremove.fs.fstype.GuestMount` (or a
  ``ValueError`` naming the key it cannot mirror).

Each check is also a plain ``check_*`` method raising
:class:`~hotremove.testing.helpers.ConformanceError`, so the kit runs without pytest. A host
without the type's tools skips the image tests, naming the package to install.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from hotremove.fs.fstype import FileMap, FilesystemType, GuestMount, ProbeConfig
from hotremove.testing.helpers import ConformanceError

#: An option no filesystem has: ``validate`` must refuse it, naming ``options``.
FOREIGN_OPTION = "hotremove-conformance-no-such-option"


def round_trip_files(block_size: int) -> dict[str, bytes]:
    """Flat names (as the core gives them) and incompressible bytes: one byte, a page and a
    byte, a few blocks and a tail, 64 KiB."""
    import numpy as np

    rng = np.random.default_rng(2004)
    sizes = {"f00000": 1, "f00001": 4097, "f00002": 3 * block_size + 17, "f00003": 64 << 10}
    return {path: rng.bytes(size) for path, size in sizes.items()}


class FilesystemTypeSuite:
    """Subclass me (``class TestXType(FilesystemTypeSuite)``) and name the type; see the
    module doc."""

    #: the registered type's name (``filesystem.type``)
    fs_type: ClassVar[str] = ""
    #: test a type object that is not installed (then ``fs_type`` may stay empty)
    type_object: ClassVar[FilesystemType | None] = None
    #: the plugin (entry-point name) that must register the type (optional)
    plugin: ClassVar[str | None] = None
    #: the tables to make images of: keys of a scenario's ``[[filesystem]]`` table
    #: (``block_size``, ``options``, ``size``); ``{}`` is the type's defaults
    configs: ClassVar[Sequence[Mapping[str, Any]]] = ({},)

    # -- the type and its tables -----------------------------------------------------------
    def the_type(self) -> FilesystemType:
        if self.type_object is not None:
            return self.type_object
        from hotremove.fs.registry import installed_types

        found = installed_types().get(self.fs_type)
        if found is None:
            raise ConformanceError(
                f"no installed plugin registers the filesystem type {self.fs_type!r} "
                "(hotremove_register_filesystem_types)"
            )
        return found

    def config(self, index: int) -> ProbeConfig:
        """Config ``index`` as a type reads it: room for the round trip's files."""
        fs_type = self.the_type()
        keys = dict(self.configs[index])
        block_size = int(keys.pop("block_size", fs_type.default_block_size))
        options = tuple(keys.pop("options", ()))
        size = int(keys.pop("size", max(fs_type.min_size, 8 << 20)))
        if keys:
            raise ConformanceError(f"configs[{index}]: unknown keys {sorted(keys)}")
        files = round_trip_files(block_size)
        return ProbeConfig(
            name=f"kit{index}",
            type=fs_type.name,
            block_size=block_size,
            size=size,
            files=len(files),
            file_size=max(len(b) for b in files.values()),
            options=options,
        )

    def require_tools(self) -> None:
        """The type's host programs, or a skip that names the package to install."""
        from hotremove.errors import ToolMissing

        try:
            self.the_type().require_tools()
        except ToolMissing as exc:
            pytest.skip(str(exc))

    # -- the checks --------------------------------------------------------------------------
    def check_registered(self) -> None:
        """The type is registered, by ``plugin`` when the suite names one."""
        fs_type = self.the_type()
        if self.plugin is None or self.type_object is not None:
            return
        from hotremove.plugins import load_plugins

        owner = load_plugins(allow=[self.plugin]).fs_types.get(fs_type.name)
        if owner is None or owner[1] != self.plugin:
            raise ConformanceError(
                f"plugin {self.plugin!r} does not register the type {fs_type.name!r} "
                f"(registered by: {owner[1] if owner else 'nobody'})"
            )

    def check_round_trip(self, index: int, workdir: Path) -> Path:
        """Make the image; its maps, its bytes at the mapped blocks, its reader and its
        checker all agree with the files. Returns the image."""
        from hotremove.fs.blockread import BlockReader

        fs_type, cfg = self.the_type(), self.config(index)
        files = round_trip_files(cfg.block_size)
        where = f"type {fs_type.name!r}, configs[{index}] ({cfg.block_size}-byte blocks" + (
            f", options {list(cfg.options)})" if cfg.options else ")"
        )
        try:
            fs_type.validate(cfg)
        except ValueError as exc:
            raise ConformanceError(f"{where}: validate refuses the kit's table: {exc}") from None
        image = workdir / f"{cfg.name}.img"
        fs_type.make_image(image, cfg, files)
        if not image.is_file() or image.stat().st_size != cfg.size:
            raise ConformanceError(f"{where}: make_image left no {cfg.size}-byte image")
        maps = fs_type.map_files(image, cfg, list(files))
        problems = []
        with BlockReader(image, cfg.block_size) as reader:
            for path, data in files.items():
                fmap = maps.get(path)
                if not isinstance(fmap, FileMap):
                    problems.append(f"map_files gave no FileMap for {path}")
                    continue
                need = -(-len(data) // cfg.block_size)
                if fmap.size != len(data) or len(fmap.blocks) != need:
                    problems.append(
                        f"{path}: map_files says {fmap.size} bytes in {len(fmap.blocks)} "
                        f"blocks; the file has {len(data)} bytes, {need} blocks"
                    )
                elif bytes(reader.read(list(fmap.blocks), len(data))) != data:
                    problems.append(
                        f"{path}: the image's bytes at the mapped blocks are not the file's"
                    )
        back = fs_type.read_files(image, cfg, list(files))
        problems += [f"{p}: read_files gives other bytes" for p in files if back.get(p) != files[p]]
        verdict = fs_type.check(image, cfg)
        if not verdict.ok:
            problems.append(f"check is not clean on a fresh image: {verdict.summary}")
        journal = fs_type.journal_blocks(image, cfg)
        if not isinstance(journal, int) or journal < 0:
            problems.append(f"journal_blocks gave {journal!r}, not a block count")
        if problems:
            raise ConformanceError(f"{where}: the round trip failed:\n  " + "\n  ".join(problems))
        return image

    def check_damage_is_noticed(self, index: int, workdir: Path) -> None:
        """One data byte of a file changed on the image: ``read_files`` gives the changed
        bytes, or ``check`` finds the image damaged."""
        fs_type, cfg = self.the_type(), self.config(index)
        image = self.check_round_trip(index, workdir)
        files = round_trip_files(cfg.block_size)
        path = "f00003"
        first = fs_type.map_files(image, cfg, [path])[path].blocks[0]
        offset = first * cfg.block_size + 100
        with open(image, "r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))
        seen = fs_type.read_files(image, cfg, [path]).get(path) != files[path]
        if not seen and fs_type.check(image, cfg).ok:
            raise ConformanceError(
                f"type {fs_type.name!r}, configs[{index}]: a data byte of {path} changed on "
                "the image, and neither read_files nor check noticed"
            )

    def check_validate_names_keys(self) -> None:
        """``validate`` refuses what the type cannot do, naming the key."""
        fs_type = self.the_type()
        base = self.config(0)
        odd = 3000  # no filesystem's block size
        wrong = {
            "options": ProbeConfig(**{**vars(base), "options": (FOREIGN_OPTION,)}),
            "block_size": ProbeConfig(**{**vars(base), "block_size": odd}),
            "files": ProbeConfig(**{**vars(base), "files": 1 << 20, "file_size": base.size}),
        }
        problems = []
        for key, cfg in wrong.items():
            try:
                fs_type.validate(cfg)
            except ValueError as exc:
                if not str(exc).startswith(f"{key}: "):
                    problems.append(f"{key}: refused with {str(exc)!r}, which does not name it")
                if "\n" in str(exc):
                    problems.append(f"{key}: the message is more than one line")
            else:
                problems.append(f"{key}: {getattr(cfg, key)!r} was not refused")
        if problems:
            raise ConformanceError(
                f"type {fs_type.name!r}: validate must raise ValueError('key: problem'):\n  "
                + "\n  ".join(problems)
            )

    def check_aops_in_every_kernel(self) -> None:
        """A table for every config in every modelled kernel, and a guest mount (or a
        refusal that names its key)."""
        from hotremove.kernels import KERNELS
        from hotremove.model.address_space import PRIVATE_KINDS, AddressSpaceOps

        fs_type = self.the_type()
        problems = []
        for index in range(len(self.configs)):
            cfg = self.config(index)
            for kernel in KERNELS.values():
                ops = fs_type.aops(cfg, kernel)
                if not isinstance(ops, AddressSpaceOps) or ops.private not in PRIVATE_KINDS:
                    problems.append(f"configs[{index}] in {kernel}: aops gave {ops!r}")
                try:
                    mount = fs_type.guest(cfg, kernel)
                except ValueError as exc:
                    if ": " not in str(exc):
                        problems.append(f"configs[{index}] in {kernel}: guest refused: {exc}")
                    continue
                if not isinstance(mount, GuestMount) or not mount.fstype:
                    problems.append(f"configs[{index}] in {kernel}: guest gave {mount!r}")
        if problems:
            raise ConformanceError(f"type {fs_type.name!r}:\n  " + "\n  ".join(problems))

    # -- pytest ------------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "kit_config" in metafunc.fixturenames:
            ids = [f"configs{i}" for i in range(len(self.configs))]
            metafunc.parametrize("kit_config", range(len(self.configs)), ids=ids)

    def test_registered(self) -> None:
        self.check_registered()

    def test_round_trip(self, kit_config: int, tmp_path: Path) -> None:
        self.require_tools()
        self.check_round_trip(kit_config, tmp_path)

    def test_damage_is_noticed(self, kit_config: int, tmp_path: Path) -> None:
        self.require_tools()
        self.check_damage_is_noticed(kit_config, tmp_path)

    def test_validate_names_keys(self) -> None:
        self.check_validate_names_keys()

    def test_aops_in_every_kernel(self) -> None:
        self.check_aops_in_every_kernel()


__all__ = ["FOREIGN_OPTION", "FilesystemTypeSuite", "round_trip_files"]
