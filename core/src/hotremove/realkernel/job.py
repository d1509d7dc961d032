"""The per-run guest program: one shell script plus its data, carried on the job disk.

Longer than 450 lines because the guest's job is one shell script, kept whole so that it reads
top to bottom as the guest runs it.

What the script does mirrors a simulator run step by step: mount the scenario's images with
its options, switch periodic writeback off (unless asked otherwise) so nothing cleans pages
behind the measurement's back, read every file (the page cache lands in the DIMM's
ZONE_MOVABLE blocks), replay the workload's dirtying write()s — same files, offsets and bytes,
read from a ramfs so the payload itself takes no page cache — then record /proc/vmstat,
/proc/meminfo and per-block /proc/kpageflags classes, offline the scenario's blocks one by
one (a signal after the timeout makes ``offline_pages`` return -EINTR), sync, unmount, mount
again and print the md5 of every file for the host to compare with the golden bytes.

A *staged* job (``GuestPlan.staged``, for ``kernel plan-check`` with several filesystems)
reads and writes one filesystem at a time, each into its own DIMM block (the script says how),
so that a snapshot shows one state per block and the host knows whose page cache each holds.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

#: /proc/vmstat counters recorded at every snapshot.
VMSTAT_KEYS = (
    "pgmigrate_success",
    "pgmigrate_fail",
    "nr_dirty",
    "nr_writeback",
    "nr_written",
    "nr_dirtied",
    "pgpgout",
    "pgpgin",
    "nr_file_pages",
    "nr_isolated_file",
    "nr_free_pages",
    "thp_migration_success",
    "thp_migration_fail",
    "compact_isolated",
    "pgsteal_kswapd",
    "pgsteal_direct",
)

#: /proc/meminfo fields recorded at every snapshot (kB).
MEMINFO_KEYS = ("MemFree", "Cached", "Buffers", "Dirty", "Writeback", "AnonPages")


@dataclass(frozen=True)
class FsPlan:
    """One filesystem image as the guest mounts it."""

    name: str
    fstype: str  #: ``mount -t`` (the type's ``GuestMount.fstype``)
    options: tuple[str, ...]
    serial: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class GuestPlan:
    """Everything the guest program needs, decided on the host."""

    filesystems: tuple[FsPlan, ...]
    #: merged dirtying writes: (fs, path, position, length); the bytes follow in ``payload``
    writes: tuple[tuple[str, str, int, int], ...]
    payload: bytes
    #: the DIMM's memory blocks to offline, as the scenario's block indices, in order
    remove_blocks: tuple[int, ...]
    dimm_blocks: int
    offline_timeout: int
    #: vm sysctls set before the workload (name → value); empty: the kernel's defaults
    sysctls: dict[str, int] = field(default_factory=dict)
    #: copy the files ``hotremove snapshot`` reads into /tmp/rkdump just before the first
    #: offline, and write them as a tar archive to the disk with serial :data:`OUT_SERIAL`
    dump_snapshot: bool = False
    #: after the offlines, in this order while some block is still online: apply the remedy
    #: (:data:`REMEDIES`), offline every block that failed again
    remedies: tuple[str, ...] = ()
    #: each filesystem's page cache in its own DIMM block (filesystem i → the DIMM's i-th
    #: block; see the script's staging), so a plan can be told whose pages a block holds
    staged: bool = False
    #: filesystems written back (``sync -f``, syncfs) after their writes: clean page cache
    synced: tuple[str, ...] = ()
    #: seconds the guest waits between the last write and the scans before the first
    #: offline (``kernel fuzz``'s time between the writes and the offline; jbd2's commit
    #: timer and the flusher run on meanwhile)
    idle: int = 0
    #: scan only the blocks being removed (the diff reads no other block's scan): each
    #: scan of a 128 MiB block is seconds of awk under TCG, repeated after every offline
    scan_removed_only: bool = False


#: What the guest can apply to a block that did not go: ``sync``; ``fsfreeze`` (freeze and
#: thaw every filesystem: a sync, then ext4_freeze's jbd2_journal_flush).
REMEDIES = ("sync", "fsfreeze")

#: Serial of the results disk a snapshot dump is written to (a tar archive from sector 0).
OUT_SERIAL = "hrout"


def merge_writes(
    writes: Iterable[tuple[str, str, int, int]],
) -> list[tuple[str, str, int, int]]:
    """Adjacent or overlapping extents of one file → one write. The bytes written are the
    final ones either way and a write dirties exactly the buffers it touches, so merging
    changes neither the page cache's state nor the disk's — only how many ``dd`` processes
    the guest starts. Order: by file (first write), then by position."""
    per_file: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for fs, path, pos, length in writes:
        if length > 0:
            per_file.setdefault((fs, path), []).append((pos, pos + length))
    merged: list[tuple[str, str, int, int]] = []
    for (fs, path), extents in per_file.items():
        extents.sort()
        start, end = extents[0]
        for s, e in extents[1:]:
            if s <= end:
                end = max(end, e)
            else:
                merged.append((fs, path, start, end - start))
                start, end = s, e
        merged.append((fs, path, start, end - start))
    return merged


def _q(value: str) -> str:
    return shlex.quote(value)


SCRIPT_HEAD = r"""# hotremove job: replay a scenario's workload, offline memory blocks, check files.
set -u
rk() { echo "RK $*"; }
now() { read UP _ < /proc/uptime; }
VMSTAT_RE='^(@VMSTAT@) '
MEMINFO_RE='^(@MEMINFO@):'
# /proc/vmstat shows a node counter's global value (global_node_page_state_pages), not the
# per-cpu deltas below stat_threshold (16 a CPU here) that vmstat_update folds in only every
# second: nr_written read right after an offline missed up to 2 x 15 of its last writes.
# Writing stat_refresh folds every CPU's deltas first (vmstat_refresh, mm/vmstat.c).
snap() {
    echo 1 > "/proc/sys/vm/stat_refresh" 2>/dev/null  # in the guest, like the sysctls
    awk -v t="$1" -v re="$VMSTAT_RE" 'BEGIN { printf "RK vmstat tag=%s", t }
        $0 ~ re { printf " %s=%s", $1, $2 } END { print "" }' /proc/vmstat
    awk -v t="$1" -v re="$MEMINFO_RE" 'BEGIN { printf "RK meminfo tag=%s", t }
        $0 ~ re { k = $1; sub(":", "", k); printf " %s=%s", k, $2 } END { print "" }' /proc/meminfo
}
devof() {
    for b in /sys/block/vd*; do
        [ "$(cat "$b/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${b##*/}"; return 0; }
    done
    return 1
}
fail() { rk error what="$1"; dmesg | tail -20 | sed 's/^/RK dmesg /'; exit 1; }
# kpageflags bits: 4 DIRTY 5 LRU 7 SLAB 8 WRITEBACK 10 BUDDY 12 ANON 14 SWAPBACKED 15 COMPOUND_HEAD
#                  16 COMPOUND_TAIL 20 NOPAGE 22 THP 35 PRIVATE (buffer_heads)
# Read in one bounded chunk per block (od -j/-N): /proc/kpageflags is a file of 8-byte words.
scan() {  # $1 memory block number, $2 simulated index, $3 tag
    od -An -v -tu8 -j $(( $1 * PPB * 8 )) -N $(( PPB * 8 )) /proc/kpageflags |
    awk -v n="$1" -v s="$2" -v t="$3" '
    { for (i = 1; i <= NF; i++) { f = $i; tot++
        if (and(rshift(f, 20), 1)) { nopage++; continue }
        if (and(rshift(f, 10), 1)) { buddy++; continue }
        if (f == 0) continue
        used++
        if (and(rshift(f, 7), 1)) slab++
        lru = and(rshift(f, 5), 1); anon = and(rshift(f, 12), 1); sb = and(rshift(f, 14), 1)
        if (!anon && !sb && (lru || and(rshift(f, 35), 1))) { file++
            if (and(rshift(f, 4), 1)) fdirty++
            if (and(rshift(f, 35), 1)) fpriv++
            if (and(rshift(f, 8), 1)) fwb++ }
        if (anon || sb) anonsb++
        if (and(rshift(f, 22), 1)) thp++ } }
    END { printf "RK kpf tag=%s sim=%d block=%d pages=%d nopage=%d buddy=%d used=%d slab=%d",
                 t, s, n, tot, nopage, buddy, used, slab
          printf " file=%d file_dirty=%d file_private=%d file_writeback=%d anon=%d thp=%d\n",
                 file, fdirty, fpriv, fwb, anonsb, thp }'
}
# The files `hotremove snapshot` reads, verbatim (layout: hotremove.realmachine.snapshot's
# DUMP_LAYOUT), into a ramfs directory: kpageflags/kpagecount per memory block in 64 KiB reads.
dump_snapshot() {  # RKPROC, RKSYS, RKDUMP: other roots (tests)
    P=${RKPROC:-/proc}; S=${RKSYS:-/sys}/devices/system/memory; D=${RKDUMP:-/tmp/rkdump}
    mkdir -p $D/memory $D/kpageflags $D/kpagecount
    now; t0=$UP
    uname -r > $D/uname
    date -u +%Y-%m-%dT%H:%M:%SZ > $D/taken
    cat $P/mounts > $D/mounts
    cat $P/meminfo > $D/meminfo 2>/dev/null
    cat $S/block_size_bytes > $D/memory/block_size_bytes
    for o in $P/fs/*/*/options; do
        [ -r "$o" ] || continue
        x=${o%/options}; drv=${x%/*}; drv=${drv##*/}; x=${x##*/}
        mkdir -p $D/$drv/$x && cat "$o" > $D/$drv/$x/options
    done
    BSZ=65536
    [ $((PPB * 8)) -lt $BSZ ] && BSZ=$((PPB * 8))
    CH=$((PPB * 8 / BSZ))
    nb=0
    for d in $S/memory*; do
        m=${d##*/}; n=${m#memory}
        mkdir -p $D/memory/$m
        for f in state valid_zones removable; do
            [ -r "$d/$f" ] && cat "$d/$f" > $D/memory/$m/$f 2>/dev/null
        done
        for l in "$d"/node*; do [ -e "$l" ] && : > "$D/memory/$m/${l##*/}"; done
        for f in kpageflags kpagecount; do
            dd if=$P/$f of=$D/$f/$n bs=$BSZ skip=$((n * CH)) count=$CH 2>/dev/null ||
                fail dump_${f}_$n
        done
        nb=$((nb + 1))
    done
    now; rk snapshot_dump blocks=$nb t0=$t0 t1=$UP
}
# $1 record name, $2 simulated index: offline the DIMM's $2-th block, report, snapshot after
offline_one() {
    n=$(echo $DIMM | cut -d' ' -f$(($2 + 1)))
    d=/sys/devices/system/memory/memory$n
    now; t0=$UP
    if timeout -s TERM "$OFFTO" sh -c "echo offline > $d/state" 2>/tmp/off.err; then
        rc=0
    else
        rc=$?
    fi
    now
    err=$(tr ' ' '_' < /tmp/off.err | tr -d '\n')
    st=$(cat $d/state)
    rk $1 sim=$2 block=$n rc=$rc t0=$t0 t1=$UP state=$st err=$err
    [ "$st" = offline ] || FAILED="$FAILED $2"
}
scan_dimm() {  # $1 tag: every online block of the DIMM (SCANONLY: of those in REMOVE)
    i=0
    for n in $DIMM; do
        case "$SCANONLY: $REMOVE " in 1:*" $i "* | :*)
            [ "$(cat /sys/devices/system/memory/memory$n/state)" = online ] &&
                scan "$n" "$i" "$1" ;;
        esac
        i=$((i + 1))
    done
}
"""

SCRIPT_BODY = r"""
rk job_begin release=$(uname -r)
BS=$((0x$(cat /sys/devices/system/memory/block_size_bytes)))
PPB=$((BS / 4096))
DIMM=
for d in /sys/devices/system/memory/memory*; do
    n=${d##*memory}
    [ "$(cat "$d/state")" = online ] && grep -q '^Movable$' "$d/valid_zones" 2>/dev/null &&
        DIMM="$DIMM $n"
done
DIMM=$(for n in $DIMM; do echo "$n"; done | sort -n | tr '\n' ' ')
rk dimm block_size=$BS blocks=$(echo $DIMM | tr ' ' ',')
set -- $DIMM
[ $# -eq "$NDIMM" ] || fail dimm_blocks_$#_expected_$NDIMM

for kv in $SYSCTLS; do
    echo "${kv#*=}" > "/proc/sys/vm/${kv%%=*}" || fail sysctl_${kv%%=*}
done
for s in dirty_writeback_centisecs dirty_expire_centisecs dirty_background_ratio dirty_ratio; do
    rk sysctl name=$s value=$(cat /proc/sys/vm/$s)
done

for spec in $FILESYSTEMS; do
    IFS=: read -r name fstype opts serial <<EOF
$spec
EOF
    dev=$(devof "$serial") || fail no_disk_$serial
    mkdir -p "/mnt/$name"
    if [ -n "$opts" ]; then
        mount -t "$fstype" -o "$opts" "$dev" "/mnt/$name" || fail mount_$name
    else
        mount -t "$fstype" "$dev" "/mnt/$name" || fail mount_$name
    fi
    rk mount fs=$name dev=$dev options=$(grep " /mnt/$name " /proc/mounts | cut -d' ' -f4)
done
snap after_mount

read_fs() {  # $1 filesystem: every file read, so its page cache is filled
    (cd "/mnt/$1" && xargs cat < "/job/files-$1" > /dev/null) || fail read_$1
}
write_fs() {  # $1 filesystem, or empty for all: replay the dirtying writes; count in $nw
    while read -r fs path off len pos; do
        [ -z "$1" ] || [ "$fs" = "$1" ] || continue
        dd if=/job/payload of="/mnt/$fs/$path" bs=65536 iflag=skip_bytes,count_bytes \
            oflag=seek_bytes conv=notrunc skip="$off" count="$len" seek="$pos" 2>/dev/null ||
            fail write_$fs
        nw=$((nw + 1))
    done < /job/writes
}
# Free pages of ZONE_MOVABLE (the DIMM's online blocks), from /proc/zoneinfo.
movable_free() {
    awk '$1 == "Node" { z = $4 }
         z == "Movable" && $1 == "pages" && $2 == "free" { print $3; exit }' /proc/zoneinfo
}
# tmpfs pages (shmem: GFP_HIGHUSER_MOVABLE, so ZONE_MOVABLE first) held until the end of the
# staging: $1 file, $2 pages (rounded up to 64 KiB writes: a 4 KiB dd is seconds under TCG)
hold() {
    dd if=/dev/zero of="/fill/$1" bs=65536 count=$((($2 + 15) / 16)) 2>/dev/null || fail fill_$1
}

nw=0
if [ -n "$STAGED" ]; then
    # Each filesystem's page cache in its own DIMM block (filesystem i -> the i-th block):
    # only block i of the DIMM is online while filesystem i is read and written; then the
    # block's free pages are taken by tmpfs pages until ZONE_MOVABLE is at its low watermark
    # (get_page_from_freelist then falls back to ZONE_NORMAL), so the next filesystem cannot
    # land in it (measured: without the per-cpu drain below, 59 of 2,048 pages did). A block
    # onlined later goes to the tail of the free lists (FPI_TO_TAIL, since
    # 5.10) and an order-0 allocation takes the smallest free chunk first
    # (__rmqueue_smallest), so a tmpfs file the size of what was left free drains the earlier
    # blocks' remainder before the next filesystem is read. At the end every tmpfs page is
    # freed and the remaining blocks are onlined: the page cache stays where it was put.
    mkdir -p /fill
    mount -t tmpfs -o size=90% tmpfs /fill || fail tmpfs
    # all of it on one CPU: another CPU's per-cpu list, refilled from an earlier block's last
    # free pages by a command that ran there, would hand them to the next filesystem
    mask=$(taskset -p $$ | awk '{ print $NF }')
    taskset -p 1 $$ > /dev/null || fail stage_taskset
    i=0
    for n in $DIMM; do
        d=/sys/devices/system/memory/memory$n
        [ $i -gt 0 ] && { echo offline > $d/state || fail stage_offline_$n; }
        i=$((i + 1))
    done
    now; t0=$UP
    NFS=$(echo $FILESYSTEMS | wc -w)
    st=0  # not i or n: scan_dimm uses those
    for spec in $FILESYSTEMS; do
        name=${spec%%:*}
        sb=$(echo $DIMM | cut -d' ' -f$((st + 1)))
        [ -n "$sb" ] || fail stage_no_block_for_$name
        if [ $st -gt 0 ]; then
            # online and offline the (empty) block once: offline_pages' zone_pcp_disable
            # drains every CPU's per-cpu free lists back to the buddy allocator, so the
            # earlier blocks' last free pages are counted and drained below, not handed out
            # later from another CPU's list
            d=/sys/devices/system/memory/memory$sb/state
            echo online_movable > $d && echo offline > $d || fail stage_pcp_drain_$sb
            left=$(movable_free)
            echo online_movable > $d || fail stage_online_$sb
            hold drain$st $((left + 256))
        fi
        now; s0=$UP
        read_fs "$name"
        write_fs "$name"
        case " $SYNCFS " in *" $name "*) sync -f "/mnt/$name" || fail syncfs_$name ;; esac
        now; rk stage fs=$name block=$sb sim=$st free=$(movable_free) t0=$s0 t1=$UP
        scan_dimm stage_$name
        st=$((st + 1))
        # the last filesystem needs no fill: nothing is staged after it
        [ $st -lt $NFS ] && hold fill$st "$(movable_free)"
    done
    rm -f /fill/*
    umount /fill
    taskset -p "$mask" $$ > /dev/null
    for n in $DIMM; do
        d=/sys/devices/system/memory/memory$n
        [ "$(cat $d/state)" = online ] || echo online_movable > $d/state || fail stage_online_$n
    done
    now; rk staged t0=$t0 t1=$UP writes=$nw
    snap after_write
else
    now; t0=$UP
    for spec in $FILESYSTEMS; do
        read_fs "${spec%%:*}"
    done
    now; rk read t0=$t0 t1=$UP
    snap after_read

    now; t0=$UP
    write_fs ""
    for name in $SYNCFS; do
        sync -f "/mnt/$name" || fail syncfs_$name
    done
    now; rk write runs=$nw t0=$t0 t1=$UP
    snap after_write
fi

[ "$IDLE" -gt 0 ] && sleep "$IDLE"
scan_dimm before_offline
# the snapshot as close to the first offline as it can be: after the scans (seconds under
# TCG), by when jbd2 has committed the workload's transaction and dirtied its pages
[ -n "$DUMP" ] && dump_snapshot
snap before_offline
FAILED=
for i in $REMOVE; do
    offline_one offline "$i"
    snap after_offline_$i
    scan_dimm after_offline_$i
done
# Remedies, in order, each followed by a second offline of every block still online:
# `sync` (writes dirty pages, commits the running transaction), then `fsfreeze` of every
# filesystem (freeze_super syncs it and ext4_freeze flushes the journal: jbd2_journal_flush
# checkpoints every transaction, so jbd2 lets go of every buffer).
remedy() {  # $1 action
    AGAIN=$FAILED
    FAILED=
    now; t0=$UP
    case $1 in
    sync) sync ;;
    fsfreeze)
        for spec in $FILESYSTEMS; do
            m=/mnt/${spec%%:*}
            fsfreeze --freeze "$m" 2>/tmp/ff.err && fsfreeze --unfreeze "$m" 2>>/tmp/ff.err ||
                rk remedy_error action=fsfreeze fs=${spec%%:*} err=$(tr ' ' _ < /tmp/ff.err)
        done ;;
    esac
    now; rk remedy_done action=$1 t0=$t0 t1=$UP
    snap after_remedy_$1
    for i in $AGAIN; do
        offline_one "remedy action=$1" "$i"
        snap after_remedy_$1_$i
    done
}
for a in $REMEDIES; do
    [ -n "$FAILED" ] && remedy "$a"
done

now; t0=$UP
sync
now; rk sync t0=$t0 t1=$UP
snap after_sync
dmesg | grep -iE 'offlin|migrat|hotplug|dump_page|page dumped|EXT[234]-fs|jbd2|warn|bug|error' |
    tail -40 | sed 's/^/RK dmesg /'

now; t0=$UP
for spec in $FILESYSTEMS; do
    IFS=: read -r name fstype opts serial <<EOF
$spec
EOF
    umount "/mnt/$name" || fail umount_$name
    dev=$(devof "$serial")
    if [ -n "$opts" ]; then mount -t "$fstype" -o "$opts" "$dev" "/mnt/$name"
    else mount -t "$fstype" "$dev" "/mnt/$name"; fi || fail remount_$name
    (cd "/mnt/$name" && xargs md5sum < "/job/files-$name") | while read -r sum path; do
        echo "RK md5 fs=$name path=$path sum=$sum"
    done
    umount "/mnt/$name"
done
now; rk remount t0=$t0 t1=$UP
if [ -n "$DUMP" ]; then
    out=$(devof @OUT@) || fail no_out_disk
    tar -c -f "$out" -C /tmp/rkdump . || fail dump_write
    sync
    rk dump_written dev=$out
fi
rk end
"""


def check_plan(plan: GuestPlan) -> None:
    """What the guest program cannot do, as a ValueError: an unknown remedy, a filesystem
    to sync that the plan does not mount, more staged filesystems than DIMM blocks."""
    unknown = [r for r in plan.remedies if r not in REMEDIES]
    if unknown:
        raise ValueError(f"unknown remedy {unknown[0]!r} (known: {', '.join(REMEDIES)})")
    names = [fs.name for fs in plan.filesystems]
    stray = [n for n in plan.synced if n not in names]
    if stray:
        raise ValueError(f"no filesystem {stray[0]!r} to sync (known: {', '.join(names)})")
    if plan.staged and len(names) > plan.dimm_blocks:
        raise ValueError(
            f"{len(names)} filesystems, one DIMM block each, but the DIMM has {plan.dimm_blocks}"
        )


def script(plan: GuestPlan) -> str:
    """``run.sh`` for ``plan``: the settings as shell variables, then the fixed program."""
    check_plan(plan)
    fss = " ".join(
        ":".join((fs.name, fs.fstype, ",".join(fs.options), fs.serial)) for fs in plan.filesystems
    )
    sysctls = " ".join(f"{k}={v}" for k, v in plan.sysctls.items())
    settings = "\n".join(
        [
            f"FILESYSTEMS={_q(fss)}",
            f"SYSCTLS={_q(sysctls)}",
            f"REMOVE={_q(' '.join(str(b) for b in plan.remove_blocks))}",
            f"NDIMM={plan.dimm_blocks}",
            f"OFFTO={plan.offline_timeout}",
            f"DUMP={'1' if plan.dump_snapshot else ''}",
            f"REMEDIES={_q(' '.join(plan.remedies))}",
            f"STAGED={'1' if plan.staged else ''}",
            f"SYNCFS={_q(' '.join(plan.synced))}",
            f"IDLE={int(plan.idle)}",
            f"SCANONLY={'1' if plan.scan_removed_only else ''}",
        ]
    )
    head = SCRIPT_HEAD.replace("@VMSTAT@", "|".join(VMSTAT_KEYS)).replace(
        "@MEMINFO@", "|".join(MEMINFO_KEYS)
    )
    return head + settings + "\n" + SCRIPT_BODY.replace("@OUT@", OUT_SERIAL)


def job_files(plan: GuestPlan) -> dict[str, bytes]:
    """The job disk's files: ``run.sh``, the payload, the write list, one file list per
    filesystem (names relative to its mount point)."""
    files = {"run.sh": script(plan).encode(), "payload": plan.payload}
    lines = []
    off = 0
    for fs, path, pos, length in plan.writes:
        lines.append(f"{fs} {path} {off} {length} {pos}\n")
        off += length
    if off != len(plan.payload):
        raise ValueError(f"payload has {len(plan.payload)} bytes, the writes need {off}")
    files["writes"] = "".join(lines).encode()
    for fs in plan.filesystems:
        files[f"files-{fs.name}"] = "".join(f"{p}\n" for p in fs.files).encode()
    return files
