"""The guest side: the generic ``/init`` of the cached initramfs, and the per-run job disk.

The initramfs is the same for every run (cached with the kernel). A run's program travels on
its own virtio disk, the *job disk* (serial ``hrjob``): a 4 KiB header
``HRJOB1 <blocks>\\n`` followed by a tar archive of ``<blocks>`` 4 KiB blocks, holding
``run.sh`` and its data. ``/init`` reads it with ``dd iflag=direct`` — O_DIRECT, so the job
disk never enters the page cache — and unpacks it into a ``ramfs`` at ``/job``. ramfs pages
are allocated ``GFP_HIGHUSER``, not movable, so neither the job's data nor the rootfs
(``rootfstype=ramfs``) can land in the ZONE_MOVABLE blocks being measured.

Results leave the guest as ``RK <record> key=value …`` lines on the serial console.
"""

from __future__ import annotations

import io
import tarfile

#: Directories of the initramfs.
ROOT_DIRS = ("bin", "dev", "proc", "sys", "tmp", "mnt", "job", "lib", "lib/modules")

#: Header magic of a job disk.
JOB_MAGIC = b"HRJOB1"
JOB_SERIAL = "hrjob"
JOB_BLOCK = 4096

INIT = r"""#!/bin/busybox sh
# hotremove generic /init: load modules, find the job disk (serial hrjob), unpack it into a
# ramfs at /job (read with O_DIRECT: it must not enter the page cache), run /job/run.sh.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "RK boot release=$(uname -r)"
for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m" 2>/tmp/insmod.err ||
        echo "RK insmod_fail module=$m err=$(tr ' ' '_' < /tmp/insmod.err)"
done
mount -t ramfs ramfs /job
JOBDEV=
i=0
while [ -z "$JOBDEV" ] && [ $i -lt 100 ]; do
    for b in /sys/block/vd*; do
        [ -f "$b/serial" ] && [ "$(cat "$b/serial")" = hrjob ] && JOBDEV=/dev/${b##*/}
    done
    [ -n "$JOBDEV" ] || { sleep 0.1; i=$((i + 1)); }
done
if [ -z "$JOBDEV" ]; then
    echo "RK error what=no_job_disk"
else
    set -- $(dd if="$JOBDEV" bs=4096 count=1 iflag=direct 2>/dev/null | head -c 64 | head -n 1)
    if [ "$1" != HRJOB1 ]; then
        echo "RK error what=bad_job_header"
    else
        dd if="$JOBDEV" bs=4096 skip=1 count="$2" iflag=direct 2>/dev/null | tar -x -C /job
        echo "RK job dev=$JOBDEV blocks=$2"
        sh /job/run.sh
        echo "RK job_exit rc=$?"
    fi
fi
sync
poweroff -f
"""


def job_disk(files: dict[str, bytes]) -> bytes:
    """The bytes of a job disk holding ``files`` (``run.sh`` must be one of them)."""
    if "run.sh" not in files:
        raise ValueError("a job needs run.sh")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755 if name.endswith(".sh") else 0o644
            info.mtime = 1_000_000_000
            tar.addfile(info, io.BytesIO(data))
    body = buf.getvalue()
    body += b"\0" * (-len(body) % JOB_BLOCK)
    blocks = len(body) // JOB_BLOCK
    header = b"%s %d\n" % (JOB_MAGIC, blocks)
    return header.ljust(JOB_BLOCK, b"\0") + body
