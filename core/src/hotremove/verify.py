"""The end-to-end truth test: sync, ``e2fsck -fn``, read every file back from the image.

Nothing here trusts the simulator's own bookkeeping: the bytes come from the image through
debugfs, the expected bytes from the builder's golden model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hotremove.errors import ImageError
from hotremove.extfs import fsck, read_files
from hotremove.hooks import Hooks
from hotremove.model.address_space import Inode
from hotremove.model.locks import running
from hotremove.model.machine import Machine
from hotremove.workload import Built, digest
from hotremove.writeback import sync_mapping, wait_for_all


@dataclass
class Verdict:
    ok: bool
    fsck: dict[str, dict[str, object]] = field(default_factory=dict)
    files_checked: int = 0
    mismatches: list[dict[str, object]] = field(default_factory=list)
    anon_checked: int = 0
    #: blocks whose new contents never reached the disk because an asynchronous write failed
    #: and the kernel recorded it on the mapping (AS_EIO: the next fsync reports it): they
    #: differ on disk — and nothing else may
    lost_to_eio: list[dict[str, object]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "fsck": self.fsck,
            "files_checked": self.files_checked,
            "mismatches": self.mismatches,
            "anon_checked": self.anon_checked,
            "lost_to_eio": self.lost_to_eio,
        }


def sync(machine: Machine, hooks: Hooks) -> int:
    """``sync(2)``: journals flush, then every dirty buffer is written; returns requests."""
    with running(machine.task):
        wait_for_all(machine)
        hooks.background_work(machine, "sync")
        for sb in machine.superblocks:
            if sb.s_journal is not None:
                sb.s_journal.flush()
        requests = sum(sync_mapping(machine.memory.frames, m) for m in machine.mappings)
    for sb in machine.superblocks:
        sb.s_bdev.flush()
    return requests


def verify(built: Built, hooks: Hooks) -> Verdict:
    """Sync, check every image with e2fsck and compare every file and anon page."""
    machine = built.machine
    machine.materialise_images()  # the images e2fsck and debugfs read are the machine's own
    sync(machine, hooks)
    verdict = Verdict(ok=True)
    for name, image in built.images.items():
        result = fsck(image)
        verdict.fsck[name] = {"ok": result.ok, "summary": result.summary}
        verdict.ok &= result.ok
        paths = [path for (fs, path) in built.golden.files if fs == name]
        try:
            on_disk = read_files(image, paths)
        except ImageError as exc:  # a damaged image is a failed verification, not a crash
            verdict.ok = False
            verdict.mismatches.append({"fs": name, "file": None, "offset": None, "error": str(exc)})
            continue
        lost = {
            (m.host.path, blocknr)
            for m in machine.mappings
            if m.host.i_sb.s_id == name
            for blocknr in m.wb_err_blocks
        }
        inodes = {m.host.path: m.host for m in machine.mappings if m.host.i_sb.s_id == name}
        for path in paths:
            verdict.files_checked += 1
            want = built.golden.files[(name, path)]
            got = on_disk[path]
            differ = differing_blocks(got, want, inodes.get(path)) if got != want else []
            if differ and all((path, b) in lost for b in differ):
                verdict.lost_to_eio.append({"fs": name, "file": path, "blocks": differ})
                verdict.ok = False  # explained, but the data never reached the disk
                continue
            if got != want:
                offset = next(
                    (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                    min(len(got), len(want)),
                )
                verdict.mismatches.append({"fs": name, "file": path, "offset": offset})
    frames = machine.memory.frames
    for vma in machine.anon_vmas:
        for vpn, pfn in vma.ptes.items():
            verdict.anon_checked += 1
            if pfn < 0 or digest(frames[pfn]) != built.golden.anon[(vma.name, vpn)]:
                verdict.mismatches.append({"anon": vma.name, "vpn": vpn, "offset": 0})
    verdict.ok &= not verdict.mismatches
    return verdict


def differing_blocks(got: bytes, want: bytes, inode: Inode | None) -> list[int]:
    """The disk blocks of a file whose bytes differ (empty when the file's map is unknown)."""
    if inode is None or len(got) != len(want):
        return []
    bs = inode.i_sb.s_blocksize
    a = np.frombuffer(got, np.uint8)
    b = np.frombuffer(want, np.uint8)
    logical = np.unique(np.flatnonzero(a != b) // bs)
    return [inode.block_map[int(i)] for i in logical.tolist()]
