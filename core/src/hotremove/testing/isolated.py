"""A throwaway virtualenv to install packages into exactly as a user would — for tests that a
plugin *package* installs, registers its entry point and passes its own tests.

Uses ``uv`` (``uv venv`` + ``uv pip install``). Local directories are installed as real,
non-editable wheels: ``--no-sources`` keeps a workspace's ``[tool.uv.sources]`` from turning a
dependency on ``hotremove`` into an editable install of the workspace member. Third-party
versions are pinned to those of the running environment (a constraints file), so the install
hits uv's cache: it runs offline when it can and falls back to the index when it cannot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import distributions
from pathlib import Path

#: Variables of the running test session that must not leak into the isolated one.
_LEAKY = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "CONDA_PREFIX", "UV_PROJECT_ENVIRONMENT")
_LEAKY_PREFIXES = ("PYTEST_", "HOTREMOVE_")


class IsolatedEnvError(RuntimeError):
    """A command in the isolated environment failed; the message carries its output."""


def find_uv() -> str | None:
    """The ``uv`` executable (``$UV`` when running under ``uv run``, else on ``PATH``)."""
    candidate = os.environ.get("UV")
    if candidate and Path(candidate).is_file():
        return candidate
    return shutil.which("uv")


def pinned_requirements() -> list[str]:
    """``name==version`` for every distribution of the running environment except hotremove's
    own: constraints that make an isolated install reproduce the tested versions."""
    pins = {}
    for dist in distributions():
        name = dist.metadata["Name"]
        if name and not name.lower().startswith("hotremove"):
            pins[name.lower()] = f"{name}=={dist.version}"
    return sorted(pins.values())


def _completed(proc: subprocess.CompletedProcess[str], what: str) -> None:
    if proc.returncode:
        raise IsolatedEnvError(
            f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )


@dataclass
class IsolatedEnv:
    """A virtualenv at ``root`` (``bin/python``, ``bin/hotremove`` ...)."""

    root: Path
    uv: str

    @property
    def python(self) -> Path:
        return self.bin("python")

    def bin(self, name: str) -> Path:
        return self.root / ("Scripts" if os.name == "nt" else "bin") / name

    def environ(self) -> dict[str, str]:
        """The calling environment minus the test session's, with this env's ``bin`` first."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in _LEAKY and not k.startswith(_LEAKY_PREFIXES)
        }
        env["PATH"] = os.pathsep.join([str(self.bin("")), env.get("PATH", "")])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def install(self, *requirements: str | Path) -> None:
        """``uv pip install`` local paths and/or requirement strings (offline first)."""
        constraints = self.root / "constraints.txt"
        constraints.write_text("\n".join(pinned_requirements()) + "\n")
        # uv caches a local directory's build keyed by its pyproject.toml, not its sources:
        # rebuild and reinstall every local package so the venv runs the code on disk
        fresh = [
            flag
            for name in _local_names(requirements)
            for flag in ("--refresh-package", name, "--reinstall-package", name)
        ]
        base = [
            self.uv,
            "pip",
            "install",
            "--no-sources",
            "--python",
            str(self.python),
            "--constraint",
            str(constraints),
            *fresh,
            *map(str, requirements),
        ]
        proc = self._uv([*base, "--offline"])
        if proc.returncode:  # not everything is in the cache: ask the index
            proc = self._uv(base)
        _completed(proc, "uv pip install " + " ".join(map(str, requirements)))

    def _uv(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        env = self.environ()
        env["PATH"] = os.environ.get("PATH", "")
        return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)

    def run(
        self,
        *args: str | Path,
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 600,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command with this environment's ``bin`` first on ``PATH`` (``env``: variables
        to set on top, such as ``HOTREMOVE_PLUGINS``)."""
        argv = [str(a) for a in args]
        exe = self.bin(argv[0])
        if exe.exists():
            argv[0] = str(exe)
        environ = {**self.environ(), **(env or {})}
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=environ, cwd=cwd, timeout=timeout
        )
        if check:
            _completed(proc, " ".join(argv))
        return proc


def create_env(root: Path, *requirements: str | Path, python: str | None = None) -> IsolatedEnv:
    """A new virtualenv at ``root`` (for ``python``, default: the running interpreter) with
    ``requirements`` installed. Raises :class:`IsolatedEnvError` when ``uv`` is missing."""
    uv = find_uv()
    if uv is None:
        raise IsolatedEnvError("uv is not installed (https://docs.astral.sh/uv/)")
    env = IsolatedEnv(Path(root), uv)
    proc = env._uv([uv, "venv", "--quiet", "--python", python or sys.executable, str(env.root)])
    _completed(proc, "uv venv")
    if requirements:
        env.install(*requirements)
    return env


__all__ = ["IsolatedEnv", "IsolatedEnvError", "create_env", "find_uv", "pinned_requirements"]


def _local_names(requirements: tuple[str | Path, ...]) -> list[str]:
    """The project names of the requirements that are local directories."""
    names = []
    for req in requirements:
        pyproject = Path(req) / "pyproject.toml"
        if pyproject.is_file():
            names.append(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"])
    return names
