#!/bin/sh
# Rebuild kernel-written.img.xz and kernel-written.sha256 (needs root and a loop device).
#
# An image the plugin makes (32 MiB, 1 KiB blocks, one small file), then mounted by the host
# kernel's XFS driver, which writes two fragmented files mkfs.xfs -p never makes:
#   frag    100 KiB written block by block, interleaved with pad and fsync'd after each
#           block, so its data fork is a bmap B+tree (BMA3 blocks) of dense extents;
#   sparse  every other block of 199 KiB, with holes and unwritten extents left by
#           speculative preallocation: a B+tree too.
# The checksums are what the kernel read back through the mount: the test holds the
# plugin's own reader (hotremove_xfs.ondisk) and xfs_db's map to them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "$here/.build.XXXXXX")
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
img="$work/kernel-written.img"
uv run python - "$img" <<'PY'
import sys
from pathlib import Path
from hotremove.scenario import FilesystemConfig
from hotremove_xfs.fs_type import XfsType
cfg = FilesystemConfig.model_construct(
    name="k", type="xfs", block_size=1024, size=32 << 20, files=1, file_size=3000, options=[]
)
XfsType().make_image(Path(sys.argv[1]), cfg, {"seed": bytes(range(256)) * 12})
PY
mkdir "$work/mnt"
mount -o loop "$img" "$work/mnt"
python3 - "$work/mnt" <<'PY'
import os, sys
mnt = sys.argv[1]
with open(f"{mnt}/sparse", "wb") as f:
    for i in range(0, 200, 2):
        f.seek(i * 1024); f.write(bytes([i % 256]) * 1024); f.flush(); os.fsync(f.fileno())
with open(f"{mnt}/frag", "wb") as a, open(f"{mnt}/pad", "wb") as b:
    for i in range(100):
        a.write(bytes([(i * 7) % 256]) * 1024); a.flush(); os.fsync(a.fileno())
        b.write(b"p" * 1024); b.flush(); os.fsync(b.fileno())
PY
(cd "$work/mnt" && sha256sum frag pad seed sparse) > "$here/kernel-written.sha256"
echo "# $(uname -r), $(mkfs.xfs -V)" >> "$here/kernel-written.sha256"
umount "$work/mnt"
xfs_repair -n -f "$img" > /dev/null 2>&1
xz -9 -T1 -c "$img" > "$here/kernel-written.img.xz"
