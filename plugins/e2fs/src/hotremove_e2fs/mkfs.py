"""Creating real, reproducible ext2/ext3/ext4 images with mke2fs.

Equal inputs give byte-identical images (fixed UUID, hash seed, owner and timestamps), so a
simulation run against an image can be repeated exactly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from hotremove.errors import ImageError
from hotremove.fs.fstype import temporary_image
from hotremove_e2fs.tools import fs_path, meaningful_lines, run_debugfs, run_tool

FSTYPES = ("ext2", "ext3", "ext4")

#: Fixed identity of every image: the UUID also seeds ext4 metadata checksums.
FIXED_UUID = "c0ffee00-0000-4000-8000-000000000001"

#: Every timestamp in the image (2001-09-09T01:46:40Z).
FIXED_TIME = 1_000_000_000

#: data_mode → tune2fs default mount option; None means the kernel default (ordered).
_DATA_MODE_OPTIONS: dict[str, str | None] = {
    "ordered": None,
    "writeback": "journal_data_writeback",
    "journal": "journal_data",
}

#: threads that make and write the source tree's files
WRITERS = 4

#: mke2fs -d failures while copying files in (not while laying out the empty filesystem).
_NO_SPACE_SIGNS = ("Could not allocate", "No space left", "Could not expand")


def make_image(
    image: Path,
    fstype: str,
    block_size: int,
    size_bytes: int,
    files: Mapping[str, bytes],
    *,
    data_mode: str | None = None,
) -> None:
    """Create `image` as a real filesystem holding `files`, or leave no file at all.

    The image is built in a temporary file next to `image` and renamed into place only once
    complete, so a failed or interrupted call never leaves a half-written image behind.
    """
    mount_option = _mount_option(fstype, data_mode)
    if size_bytes <= 0:
        raise ImageError(f"image size must be positive, not {size_bytes}")
    image = Path(image)
    source = tempfile.TemporaryDirectory(dir=_source_dir(files))
    with temporary_image(image) as tmp_image, source as srcdir:
        entries = _write_tree(Path(srcdir), files)
        with open(tmp_image, "r+b") as handle:
            handle.truncate(size_bytes)
        _mke2fs(
            tmp_image,
            fstype,
            block_size,
            size_bytes,
            Path(srcdir),
            needs_journal=_needs_journal(fstype, mount_option),
        )
        _pin_ctimes(tmp_image, entries)
        if mount_option is not None:
            run_tool("tune2fs", ["-o", mount_option, str(tmp_image)], env=_fake_time())
        os.replace(tmp_image, image)


def _needs_journal(fstype: str, mount_option: str | None) -> bool:
    """ext3 without a journal is ext2, and a data mode needs a journal to mean anything."""
    return fstype == "ext3" or mount_option is not None


def needs_journal(fstype: str, data_mode: str | None) -> bool:
    """Whether an image too small for a journal is refused (ext3; ext4 in a data mode other
    than ordered): an ext4 image in ordered mode is made without one, as mke2fs does."""
    return _needs_journal(fstype, _mount_option(fstype, data_mode))


def _mount_option(fstype: str, data_mode: str | None) -> str | None:
    """Check fstype and data_mode together; return the tune2fs -o option to set, if any."""
    if fstype not in FSTYPES:
        raise ImageError(
            f"unknown filesystem type {fstype!r}: expected one of {', '.join(FSTYPES)}"
        )
    if data_mode is None:
        return None
    if data_mode not in _DATA_MODE_OPTIONS:
        choices = ", ".join(_DATA_MODE_OPTIONS)
        raise ImageError(f"unknown data mode {data_mode!r}: expected one of {choices}")
    if fstype == "ext2":
        if data_mode == "journal":
            raise ImageError("data_mode 'journal' needs ext3 or ext4: ext2 has no journal")
        return None
    return _DATA_MODE_OPTIONS[data_mode]


#: where the tree mke2fs -d copies from goes when it fits: memory (tmpfs), not the disk the
#: image is written to — the tree is written, read once, and deleted
SHM = Path("/dev/shm")


def _source_dir(files: Mapping[str, bytes]) -> str | None:
    """``/dev/shm`` when it has room for the files twice over, else the default temp dir."""
    need = 2 * sum(len(files[path]) for path in list(files)[:1]) * len(files)
    with contextlib.suppress(OSError):
        if SHM.is_dir() and os.access(SHM, os.W_OK) and shutil.disk_usage(SHM).free > need:
            return str(SHM)
    return None


def _write_one(root: Path, path: str, files: Mapping[str, bytes]) -> list[str]:
    parts = fs_path(path).strip('"/').split("/")
    target = root.joinpath(*parts)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[path])
    except OSError as exc:
        raise ImageError(f"cannot lay out file {path!r}: {exc.strerror}") from exc
    return parts


def _write_tree(root: Path, files: Mapping[str, bytes]) -> list[str]:
    """Write `files` under `root` with fixed times; return every path created, parents first.
    Files are made (a generator releases the GIL while it draws) and written by a few
    threads at once: one file's bytes are drawn while another's are written."""
    entries: set[str] = set()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        for parts in pool.map(partial(_write_one, root, files=files), files):
            entries.update("/".join(parts[:depth]) for depth in range(1, len(parts) + 1))
    ordered = sorted(entries, key=lambda entry: (entry.count("/"), entry))
    for entry in [*reversed(ordered), ""]:
        os.utime(root / entry, (FIXED_TIME, FIXED_TIME))
    return ordered


def _fake_time() -> dict[str, str]:
    """Environment that makes e2fsprogs stamp FIXED_TIME instead of the clock."""
    return {"E2FSPROGS_FAKE_TIME": str(FIXED_TIME)}


def _mke2fs(
    image: Path, fstype: str, block_size: int, size_bytes: int, srcdir: Path, *, needs_journal: bool
) -> None:
    """Run mke2fs -d; turn its out-of-space failure into a message about the files not fitting."""
    extended = f"hash_seed={FIXED_UUID},root_owner=0:0"
    args = ["-q", "-F", "-t", fstype, "-b", str(block_size), "-U", FIXED_UUID, "-E", extended]
    result = run_tool(
        "mke2fs", [*args, "-d", str(srcdir), str(image)], check=False, env=_fake_time()
    )
    problems = meaningful_lines(result.stderr.decode(errors="replace"))
    where = f"a {human_size(size_bytes)} {fstype} image ({block_size}-byte blocks)"
    if result.returncode != 0:
        if any("populat" in line for line in problems) and any(
            sign in line for line in problems for sign in _NO_SPACE_SIGNS
        ):
            raise ImageError(f"files do not fit in {where}: {problems[0]}")
        reason = problems[0] if problems else "no error message"
        raise ImageError(f"mke2fs failed (exit status {result.returncode}) for {where}: {reason}")
    if needs_journal and any("too small for a journal" in line for line in problems):
        raise ImageError(f"{where} is too small for a journal")


def _pin_ctimes(image: Path, entries: list[str]) -> None:
    """mke2fs -d copies each source file's ctime, which can't be set; overwrite it with debugfs."""
    commands = [f"sif {fs_path(entry)} ctime @{FIXED_TIME}" for entry in entries]
    run = run_debugfs(
        image, [f"sif / ctime @{FIXED_TIME}", *commands], writable=True, env=_fake_time()
    )
    if run.errors:
        raise ImageError(f"debugfs could not fix timestamps in {image}: {run.errors[0]}")


def human_size(size: int) -> str:
    """4194304 → '4 MiB': sizes in messages should read the way users wrote them."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"
