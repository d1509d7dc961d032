"""Regenerate (or check) the command outputs quoted in README.md and docs/*.md.

A quoted output sits between two markers; the first names the command and how its output is
trimmed, the fenced block between them is rewritten from a fresh run:

    <!-- output: uv run hotremove kernels -->
    ```text
    $ uv run hotremove kernels
    ...
    ```
    <!-- /output -->

Options follow the command, separated by " ;; ":

    lines=A-B       keep output lines A to B (1-based, inclusive; "A-" to the end)
    from=REGEX      keep the output from the first line that matches
    drop=REGEX      drop the output lines that match
    mask=REGEX      replace each match with "…", across lines (machine-dependent: wall times)
    lang=NAME       the fence's language (default text)
    prompt=no       do not print the "$ command" line (e.g. a TOML file)
    status=N        the command's expected exit status (default 0)

Usage (from the repository root):

    uv run python docs/refresh.py            # rewrite every quoted output
    uv run python docs/refresh.py --check    # exit 1 if a command fails or a figure drifted

Each command runs as `python -m hotremove ...` in a subprocess (COLUMNS=120, no colour), so
what is quoted is what a user sees in a 120-column terminal. --check compares words exactly and
numbers within TOLERANCE (relative); table rules and column padding are ignored.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ("README.md", "docs/*.md")
PREFIX = "uv run hotremove"
TOLERANCE = 0.05  # a quoted figure may differ from a fresh run by 5 % of the larger of the two
COLUMNS = 120

_BLOCK = re.compile(
    r"(?P<open><!-- output: (?P<spec>.+?) -->\n)(?P<body>.*?)(?P<close><!-- /output -->)",
    re.DOTALL,
)
_RULES = "─━│┃┏┓┗┛┡┩┢┪╇┳┻╋┼├┤┬┴└┘┌┐═║╞╡╪╤╧╭╮╰╯"


@dataclass(frozen=True)
class Quote:
    """One quoted output: where it is, the command, how it is trimmed, what is quoted now."""

    path: Path
    spec: str
    command: str
    options: dict[str, str]
    body: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}: {self.command}"


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    command, *rest = [part.strip() for part in spec.split(" ;; ")]
    if not command.startswith(PREFIX + " ") and command != PREFIX:
        raise ValueError(f"quoted command must start with {PREFIX!r}: {command!r}")
    options: dict[str, str] = {}
    for part in rest:
        key, sep, value = part.partition("=")
        if not sep or key not in {"lines", "from", "drop", "mask", "lang", "prompt", "status"}:
            raise ValueError(f"bad option {part!r} in {spec!r}")
        options[key] = value
    return command, options


def files() -> list[Path]:
    found: list[Path] = []
    for pattern in FILES:
        found.extend(sorted(ROOT.glob(pattern)))
    return found


def quotes(paths: list[Path] | None = None) -> Iterator[Quote]:
    for path in paths if paths is not None else files():
        for m in _BLOCK.finditer(path.read_text(encoding="utf-8")):
            command, options = parse_spec(m["spec"])
            yield Quote(path, m["spec"], command, options, m["body"])


def run(command: str, status: int = 0) -> str:
    """Run a quoted command the way a user would; its stdout. Raises if its exit status is not
    `status`."""
    args = shlex.split(command)[len(PREFIX.split()) :]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOTREMOVE_")}
    env.update(COLUMNS=str(COLUMNS), LINES="50", NO_COLOR="1", TERM="dumb")
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "hotremove", "--no-progress", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != status:
        raise RuntimeError(f"{command!r} exited {proc.returncode}:\n{proc.stderr.strip()[-2000:]}")
    return proc.stdout


def trim(output: str, options: dict[str, str]) -> str:
    lines = [line.rstrip() for line in output.rstrip("\n").split("\n")]
    if "lines" in options:
        first, _, last = options["lines"].partition("-")
        lines = lines[int(first) - 1 : int(last) if last else None]
    if "from" in options:
        start = re.compile(options["from"])
        lines = lines[next((i for i, line in enumerate(lines) if start.search(line)), 0) :]
    if "drop" in options:
        drop = re.compile(options["drop"])
        lines = [line for line in lines if not drop.search(line)]
    text = "\n".join(lines)
    if "mask" in options:  # on the whole text: a figure may have wrapped to the next line
        text = re.sub(options["mask"], "…", text)
    return text


def render(quote: Quote, output: str) -> str:
    """The fenced block for a fresh output."""
    lang = quote.options.get("lang", "text")
    head = "" if quote.options.get("prompt") == "no" else f"$ {quote.command}\n"
    return f"```{lang}\n{head}{trim(output, quote.options)}\n```\n"


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def tokens(text: str) -> list[str]:
    """Words and numbers, without table rules and column padding."""
    text = text.translate({ord(c): " " for c in _RULES})
    return re.findall(r"\d+(?:[.,]\d+)*|[^\s\d]+", text)


def _value(token: str) -> float | None:
    if not _NUMBER.fullmatch(token):
        return None
    plain = token.replace(",", "")
    try:
        return float(plain)
    except ValueError:  # "0.2.0": a version, compared as a word
        return None


def drift(quoted: str, fresh: str, tolerance: float = TOLERANCE) -> list[str]:
    """What differs between a quoted block and a fresh one: words exactly, numbers within
    `tolerance` of the larger. Empty when they agree."""
    a, b = tokens(quoted), tokens(fresh)
    problems: list[str] = []
    if len(a) != len(b):
        problems.append(f"{len(a)} words and figures quoted, {len(b)} in a fresh run")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        vx, vy = _value(x), _value(y)
        if vx is not None and vy is not None:
            if abs(vx - vy) > tolerance * max(abs(vx), abs(vy)):
                problems.append(f"figure {x} is now {y} (near {' '.join(b[max(0, i - 4) : i])!r})")
        elif x != y:
            problems.append(f"{x!r} is now {y!r} (near {' '.join(b[max(0, i - 4) : i])!r})")
        if len(problems) >= 5:
            break
    return problems


def fresh_outputs(qs: list[Quote]) -> dict[str, str]:
    """One run per distinct command, two at a time."""
    status = {q.command: int(q.options.get("status", "0")) for q in qs}
    commands = sorted(status)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outputs = pool.map(lambda c: run(c, status[c]), commands)
        return dict(zip(commands, outputs, strict=True))


def refresh(paths: list[Path] | None = None) -> list[Path]:
    """Rewrite every quoted output; the files that changed."""
    qs = list(quotes(paths))
    outputs = fresh_outputs(qs)
    changed = []
    for path in sorted({q.path for q in qs}):
        text = path.read_text(encoding="utf-8")

        def sub(m: re.Match[str], path: Path = path) -> str:
            command, options = parse_spec(m["spec"])
            q = Quote(path, m["spec"], command, options, m["body"])
            return m["open"] + render(q, outputs[command]) + m["close"]

        new = _BLOCK.sub(sub, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def check(paths: list[Path] | None = None) -> list[str]:
    """Every quoted output against a fresh run; one message per stale quote."""
    qs = list(quotes(paths))
    outputs = fresh_outputs(qs)
    stale = []
    for q in qs:
        problems = drift(q.body, render(q, outputs[q.command]))
        if problems:
            stale.append(f"{q.where}:\n  " + "\n  ".join(problems))
    return stale


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="check, do not rewrite")
    parser.add_argument("files", nargs="*", type=Path, help="default: README.md docs/*.md")
    args = parser.parse_args()
    paths = [p.resolve() for p in args.files] or None
    if args.check:
        stale = check(paths)
        for message in stale:
            print(message, file=sys.stderr)
        print(f"{len(stale)} stale quote(s)" if stale else "quoted outputs are current")
        return 1 if stale else 0
    changed = refresh(paths)
    for path in changed:
        print(f"rewrote {path.relative_to(ROOT)}")
    if not changed:
        print("quoted outputs were already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
