"""Reading file contents back out of an image with debugfs.

This deliberately shares nothing with the simulator's own block bookkeeping: what debugfs reads
through the real on-disk metadata is the truth a simulated migration is verified against.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from hotremove.errors import ImageError
from hotremove_e2fs.tools import fs_path, run_debugfs


def read_files(image: Path, paths: Sequence[str]) -> dict[str, bytes]:
    """The bytes of each file as stored in `image`, read by one debugfs process."""
    with tempfile.TemporaryDirectory(prefix="hotremove-readback-") as tmp:
        outputs = [Path(tmp) / str(index) for index in range(len(paths))]
        commands = [
            f'dump {fs_path(path)} "{output}"' for path, output in zip(paths, outputs, strict=True)
        ]
        run = run_debugfs(image, commands)
        for path, output in zip(paths, outputs, strict=True):
            if not output.exists():
                raise ImageError(f"{path!r} is not in {image}: {_reason(path, run.errors)}")
        if run.errors:
            raise ImageError(f"cannot read files from {image}: {run.errors[0]}")
        return {path: output.read_bytes() for path, output in zip(paths, outputs, strict=True)}


def _reason(path: str, errors: list[str]) -> str:
    """debugfs's complaint about `path` (it prefixes its errors with the path it was given)."""
    name = fs_path(path).strip('"')
    return next((line for line in errors if line.startswith(name)), "debugfs did not dump it")
