"""Debian's archive through an apt configuration private to one fetch.

The host's apt configuration is never read for sources and never written: every ``apt-get``
and ``apt-cache`` call gets its own sources list, an empty ``sources.list.d``, an empty
preferences directory, and its own lists, archives, package cache and dpkg status
(``-o Dir::Etc::SourceList=… -o Dir::State::Lists=…``), all inside the fetch's temporary
directory — so a fetch that fails leaves nothing behind, and no ``apt-get update`` of the host
is ever needed. The host's ``apt.conf.d`` (a proxy, say) still applies.

Which suites hold which kernel (the URIs and keyring of Debian's own ``debian.sources``):
bullseye has Linux 5.10 (5.10.0-32, the kernel the reference figures were measured on); 6.1
and 6.12 are bookworm's, but their current builds are only in bookworm-security (on
``deb.debian.org/debian-security``: bookworm + bookworm-updates alone stop at 6.1.0-50 and
have no 6.12); sid has 7.2. Debian's 7.x packages are split: ``linux-image-REL`` is a meta package
whose kernel is in ``linux-binary-REL``, its modules in ``linux-modules-REL`` and its config,
``modules.builtin`` and ``modules.order`` in ``linux-base-REL`` (all under
``usr/lib/modules/REL/``); :func:`packages_to_download` follows those dependencies.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hotremove.errors import HotremoveError
from hotremove.realkernel.tools import require_tools

#: the archives (``$HOTREMOVE_DEBIAN_MIRROR``, ``$HOTREMOVE_DEBIAN_SECURITY_MIRROR`` override
#: them: another mirror, or a test's unreachable one)
DEFAULT_MIRRORS = {
    "debian": "http://deb.debian.org/debian",
    "debian-security": "http://deb.debian.org/debian-security",
}
MIRROR_ENV = {
    "debian": "HOTREMOVE_DEBIAN_MIRROR",
    "debian-security": "HOTREMOVE_DEBIAN_SECURITY_MIRROR",
}
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

#: kernel version → (archive, suite) of every list that holds its packages
SUITES: dict[str, tuple[tuple[str, str], ...]] = {
    "5.10": (("debian", "bullseye"),),
    "6.1": (
        ("debian", "bookworm"),
        ("debian", "bookworm-updates"),
        ("debian-security", "bookworm-security"),
    ),
    "6.12": (
        ("debian", "bookworm"),
        ("debian", "bookworm-updates"),
        ("debian-security", "bookworm-security"),
    ),
    "7.2": (("debian", "sid"),),
}

#: the packages Debian splits a 7.x kernel into (what ``linux-image-REL`` depends on)
SPLIT_PARTS = ("linux-binary-", "linux-modules-", "linux-base-")


class ArchiveError(HotremoveError):
    """The archive could not be reached or does not have the kernel: exit status 1 (the
    input was fine; the fetch was not)."""


def mirror(archive: str = "debian") -> str:
    """The URI of ``archive`` ("debian" or "debian-security"), from the environment or the
    default."""
    return os.environ.get(MIRROR_ENV[archive], "").strip() or DEFAULT_MIRRORS[archive]


def sources_for(version: str) -> tuple[tuple[str, str], ...]:
    """(URI, suite) of every list that holds ``version``'s packages."""
    return tuple((mirror(archive), suite) for archive, suite in SUITES[version])


def image_pattern(version: str) -> re.Pattern[str]:
    """``linux-image-…-amd64`` packages of ``version``: Debian's ABI names (``5.10.0-32``,
    ``6.1.0-57``) and the newer ``6.12.118+deb12``, ``7.2.13+deb14``."""
    return re.compile(
        rf"^linux-image-{re.escape(version)}\.(\d+)(?:-(\d+)|\+deb(\d+))-amd64(-unsigned)?$"
    )


@dataclass(frozen=True)
class PrivateApt:
    """apt with its own state under ``root`` (created by :meth:`update`), reading the
    ``sources`` (URI, suite) only."""

    root: Path
    sources: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        """``suite (URI), …`` for messages."""
        return ", ".join(f"{suite} ({uri})" for uri, suite in self.sources)

    def options(self) -> list[str]:
        r = self.root
        return [
            f"-o=Dir::Etc::SourceList={r / 'sources.list'}",
            f"-o=Dir::Etc::SourceParts={r / 'sources.list.d'}",
            f"-o=Dir::Etc::Preferences={r / 'preferences'}",
            f"-o=Dir::Etc::PreferencesParts={r / 'preferences.d'}",
            f"-o=Dir::State::Lists={r / 'lists'}",
            f"-o=Dir::Cache={r / 'cache'}",
            f"-o=Dir::State::Status={r / 'status'}",
            "-o=Acquire::Languages=none",
            "-o=Acquire::Retries=1",  # apt's default (3, with back-off) makes a dead mirror slow
            "-o=APT::Sandbox::User=root",  # a private 0700 directory: _apt could not write it
        ]

    def sources_list(self) -> str:
        signed = f"[signed-by={KEYRING}]"
        return "".join(f"deb {signed} {uri} {suite} main\n" for uri, suite in self.sources)

    def update(self) -> None:
        """Write the private configuration and download the suites' package lists."""
        if not KEYRING.is_file():
            raise HotremoveError(f"{KEYRING} not found: apt-get install debian-archive-keyring")
        for d in ("sources.list.d", "preferences.d", "lists/partial", "cache/archives/partial"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "sources.list").write_text(self.sources_list())
        (self.root / "status").write_text("")
        try:
            # apt-get update exits 0 when a list cannot be fetched ("W: Failed to fetch",
            # "Some index files failed to download"): every "Err:" is a failure here
            self._run("apt-get", "update", "-q", errors=("Err", "W: Failed to fetch"))
        except ArchiveError as exc:
            raise ArchiveError(f"cannot read the Debian archive: {self.where}: {exc}") from None

    def pkgnames(self, prefix: str) -> list[str]:
        return self._run("apt-cache", "pkgnames", prefix).split()

    def depends(self, package: str) -> list[str]:
        """The packages ``package`` depends on (first alternative of each)."""
        out = self._run("apt-cache", "depends", "--no-recommends", "--no-suggests", package)
        return [
            line.split(":", 1)[1].strip().strip("<>")
            for line in out.splitlines()
            if line.strip().startswith("Depends:")
        ]

    def download(self, packages: list[str], into: Path) -> list[Path]:
        """The packages' ``.deb`` files, downloaded into ``into``."""
        self._run("apt-get", "download", "-q", *packages, cwd=into)
        return sorted(into.glob("*.deb"))

    def _run(
        self, tool: str, *args: str, cwd: Path | None = None, errors: tuple[str, ...] = ()
    ) -> str:
        """``tool`` with the private options; a non-zero exit, or an output line starting
        with one of ``errors``, is an :class:`ArchiveError` naming the first error line."""
        exe = require_tools(tool)[tool]
        argv = [exe, *self.options(), *args]
        env = {**os.environ, "LC_ALL": "C"}
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env)
        lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines()]
        failed = [ln for ln in lines if ln.startswith(("E:", *errors))]
        if result.returncode != 0 or failed:
            reason = (failed or [ln for ln in lines if ln] or [f"exit {result.returncode}"])[0]
            raise ArchiveError(f"{tool} {args[0]} failed: {reason}")
        return result.stdout


def newest_image(apt: PrivateApt, version: str) -> str:
    """The newest ``linux-image`` package of ``version`` in the lists, preferring
    ``-unsigned`` (the same kernel without the Secure Boot signature, which QEMU's direct
    boot ignores)."""
    pattern = image_pattern(version)
    best: tuple[tuple[int, ...], str] | None = None
    for name in apt.pkgnames(f"linux-image-{version}."):
        m = pattern.match(name)
        if m is None:
            continue
        key = (*(int(g or 0) for g in m.groups()[:3]), 1 if m.group(4) else 0)
        if best is None or key > best[0]:
            best = (key, name)
    if best is None:
        raise ArchiveError(f"no Debian package for Linux {version} in {apt.where}")
    return best[1]


def packages_to_download(apt: PrivateApt, image: str) -> list[str]:
    """``image`` itself, or — a split 7.x kernel — the binary, modules and base packages
    it depends on."""
    parts = [d for d in apt.depends(image) if d.startswith(SPLIT_PARTS)]
    return sorted(parts) if parts else [image]


__all__ = [
    "DEFAULT_MIRRORS",
    "KEYRING",
    "SUITES",
    "ArchiveError",
    "PrivateApt",
    "image_pattern",
    "mirror",
    "newest_image",
    "packages_to_download",
    "sources_for",
]
