"""Bad ``[[filesystem]]`` tables for the vfat, XFS and btrfs types: one line naming the key,
exit status 2, and ``scenario check`` says exactly what ``run`` says — check accepts what
run can build, and nothing else (an XFS file set too big for the image beside its log and
metadata included: :mod:`hotremove_xfs.fit` asks mkfs.xfs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import invoke

TABLE = """\
[memory]
size = "512MiB"
block_size = "128MiB"

[[filesystem]]
name = "data"
type = "{type}"
block_size = {block_size}
size = "{size}"
files = {files}
file_size = "128KiB"
{options}
[workload]
dirty = 0.3
placement = "fill"

[remove]
blocks = [0]
"""

BAD = {
    "vfat data=journal": (
        dict(type="vfat", block_size=1024, size="32MiB", files=64, options=["data=journal"]),
        "filesystem[0].options: vfat has no option 'data=journal' (known: fat=12, fat=16, fat=32)",
    ),
    "xfs 512-byte blocks": (
        dict(type="xfs", block_size=512, size="64MiB", files=64),
        "filesystem[0].block_size: xfs images have blocks of 1024, 2048, 4096 bytes",
    ),
    "xfs under its minimum size": (
        dict(type="xfs", block_size=4096, size="16MiB", files=8),
        "filesystem[0].size: a xfs image must be between 32MiB and 8GiB",
    ),
    "xfs full beside its log": (
        dict(type="xfs", block_size=4096, size="32MiB", files=211),
        "filesystem[0].files: 211 files of 131072 bytes do not fit in a 33554432-byte xfs "
        "image with 4096-byte blocks beside its log and metadata (mkfs.xfs: no space left on "
        "device)",
    ),
    "btrfs under its minimum size": (
        dict(type="btrfs", block_size=4096, size="16MiB", files=8),
        "filesystem[0].size: a btrfs image must be between 45MiB and 8GiB",
    ),
    "btrfs 1 KiB sectors": (
        dict(type="btrfs", block_size=1024, size="64MiB", files=8),
        "filesystem[0].block_size: btrfs images have blocks of 4096 bytes",
    ),
}


def scenario(tmp_path: Path, **table: object) -> Path:
    options = table.pop("options", None)
    line = f"options = {options!r}".replace("'", '"') + "\n" if options else ""
    path = tmp_path / "s.toml"
    path.write_text(TABLE.format(options=line, **table))
    return path


@pytest.mark.parametrize("case", list(BAD))
def test_check_and_run_refuse_alike_in_one_line(case: str, tmp_path: Path) -> None:
    table, message = BAD[case]
    path = scenario(tmp_path, **dict(table))
    check = invoke("scenario", "check", path)
    run = invoke("run", path)
    for proc in (check, run):
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr == f"hotremove: error: {message}\n"
    assert check.stdout == run.stdout == ""


def test_the_largest_xfs_file_set_check_accepts_run_builds(tmp_path: Path) -> None:
    """210 files of 128 KiB fill a 32 MiB image with 4 KiB blocks; with 211 mkfs.xfs exits 0
    but writes the last file short, with a bad AGF checksum (refused above)."""
    path = scenario(tmp_path, type="xfs", block_size=4096, size="32MiB", files=210)
    assert invoke("scenario", "check", path).returncode == 0
    run = invoke("run", path)
    assert run.returncode == 0, run.stderr
    assert "210 files byte-equal" in run.stdout
