"""Reading an unmounted btrfs image with btrfs-progs: its block maps (``dump-tree``), its files
(``btrfs restore``) and its checker's verdict (``btrfs check --readonly``).

Data checksums. A real btrfs never overwrites a data block in place: a dirty page is written to
a new extent (copy-on-write) and its crc32c goes into the checksum tree with the new metadata.
The simulator's writeback writes a dirty page home, at the blocks :func:`file_maps` gave it, and
changes no metadata — so after it synced, the checksums of every block it wrote are stale.
mkfs.btrfs 6.2 cannot make files ``nodatasum``/``nodatacow`` (``--inode-flags`` came with later
btrfs-progs), so the images keep checksums and this module keeps the two checks apart:

* :func:`check` is ``btrfs check --readonly``: every tree, the extent and checksum items, the
  free-space tree — everything the simulator must never touch — but not data against its
  checksums. The files' bytes are verified by reading them (:func:`read_files`) against the
  golden model.
* :func:`data_csum_errors` is ``btrfs check --readonly --check-data-csum``: the logical address
  of each sector whose bytes no longer match their checksum — what a real kernel would refuse
  to read (-EIO). A simulator-synced image has one per block it wrote; a fresh image none.

``btrfs restore`` does not verify data checksums: it returns the bytes on disk, so a changed
byte shows up as a difference from the golden model, not as a restore error.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hotremove.errors import ImageError
from hotremove.fs.fstype import CheckVerdict, FileMap
from hotremove_btrfs import progs
from hotremove_btrfs.dumptree import file_maps, parse_chunk_tree, parse_fs_tree

#: ``mirror 1 bytenr 13676544 csum 0xba1d8b76 expected csum 0x17d2f544``
_CSUM_MISMATCH = re.compile(r"mirror \d+ bytenr (\d+) csum \S+ expected csum \S+")


def dump_tree(btrfs: str, image: Path, tree: str) -> str:
    """``btrfs inspect-internal dump-tree -t TREE IMAGE`` (``chunk``, ``fs``)."""
    return progs.run(
        "btrfs", btrfs, ["inspect-internal", "dump-tree", "-t", tree, str(image)]
    ).stdout


def map_files(btrfs: str, image: Path, paths: Sequence[str], block_size: int) -> dict[str, FileMap]:
    """Every path's size and blocks: the fs tree's extents through the chunk tree."""
    chunks = parse_chunk_tree(dump_tree(btrfs, image, "chunk"))
    tree = parse_fs_tree(dump_tree(btrfs, image, "fs"))
    return file_maps(tree, chunks, paths, block_size)


def check(btrfs: str, image: Path) -> CheckVerdict:
    """``btrfs check --readonly``: the metadata (see the module doc for the data)."""
    result = progs.run("btrfs", btrfs, ["check", "--readonly", str(image)], check=False)
    lines = progs.meaningful_lines(result.stderr) + progs.meaningful_lines(result.stdout)
    if result.returncode == 0:
        found = next((line for line in lines if line.startswith("found ")), "no error found")
        return CheckVerdict(True, f"btrfs check --readonly: {found} (data checksums not read)")
    problem = next((line for line in lines if line.startswith("ERROR")), None)
    return CheckVerdict(False, f"btrfs check --readonly: {problem or progs.reason(result)}")


def data_csum_errors(btrfs: str, image: Path) -> list[int]:
    """Logical addresses of the sectors whose data no longer matches its checksum."""
    args = ["check", "--readonly", "--check-data-csum", str(image)]
    result = progs.run("btrfs", btrfs, args, check=False)
    found = [int(m.group(1)) for m in _CSUM_MISMATCH.finditer(result.stderr + result.stdout)]
    if result.returncode != 0 and not found:
        raise ImageError(f"btrfs check --check-data-csum failed: {progs.reason(result)}")
    return sorted(set(found))


def read_files(btrfs: str, image: Path, paths: Sequence[str]) -> dict[str, bytes]:
    """Every path's bytes, copied out of the unmounted image by ``btrfs restore``."""
    image = Path(image)
    with tempfile.TemporaryDirectory(prefix=f".{image.name}.restore.", dir=image.parent) as out:
        progs.run("btrfs", btrfs, ["restore", str(image), out])
        contents: dict[str, bytes] = {}
        for path in paths:
            target = Path(out, *[p for p in path.split("/") if p])
            try:
                contents[path] = target.read_bytes()
            except OSError as exc:
                raise ImageError(
                    f"btrfs restore did not give back {path!r} from {image.name}: {exc.strerror}"
                ) from exc
        return contents
