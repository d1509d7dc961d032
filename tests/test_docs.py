"""The README and docs/ stay true: quoted commands still run and their quoted figures have not
drifted (docs/refresh.py, within refresh.TOLERANCE), links resolve, commands are written one
way (`uv run hotremove …`), and the README stays a short page for users."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("docs_refresh", ROOT / "docs" / "refresh.py")
assert _spec is not None and _spec.loader is not None
refresh = importlib.util.module_from_spec(_spec)
sys.modules["docs_refresh"] = refresh
_spec.loader.exec_module(refresh)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_quoted_output_is_current() -> None:
    """Each quoted command runs (with its expected exit status) and prints what is quoted:
    words exactly, figures within refresh.TOLERANCE. Fix: `uv run python docs/refresh.py`."""
    quotes = list(refresh.quotes())
    assert len(quotes) >= 5, "README.md and docs/ should quote a few command outputs"
    assert any(q.path.name == "README.md" for q in quotes)
    stale = refresh.check()
    assert not stale, "stale quoted output; run `uv run python docs/refresh.py`:\n" + "\n".join(
        stale
    )


def test_drift_tolerance() -> None:
    quoted = "┃ pages ┃ 1,000 │ simulated 1.10 s"
    assert refresh.drift(quoted, "┃ pages  ┃  1,040 │ simulated 1.10 s") == []
    assert refresh.drift(quoted, "┃ pages ┃ 1,100 │ simulated 1.10 s")
    assert refresh.drift(quoted, "┃ frames ┃ 1,000 │ simulated 1.10 s")
    assert refresh.drift(quoted, "┃ pages ┃ 1,000 │ simulated 1.10 s extra")


def test_readme_is_a_short_page_for_users() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.encode()) <= 12 * 1024
    for phrase in ("next steps", "as the code got faster", "cProfile", "/work/shared"):
        assert phrase not in text
    assert "rebinding buffer_head to new(remapped) page" in text
    for page in (
        "scenario",
        "cli",
        "kernels",
        "realkernel",
        "performance",
        "reliability",
        "explore",
        "plan",
        "sweep",
        "plugins",
    ):
        assert f"(docs/{page}.md)" in text, page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_design_document_is_cited(page: Path) -> None:
    assert not re.search(r"\bDESIGN\b", page.read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


_COMMANDS = {
    "bench",
    "cache",
    "compare",
    "demo",
    "explore",
    "kernel",
    "kernels",
    "new-plugin",
    "plan",
    "plugins",
    "run",
    "scenario",
    "snapshot",
    "sweep",
}


@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "plugins.md"], ids=lambda p: p.name)
def test_commands_are_written_one_way(page: Path) -> None:
    """In code, `hotremove COMMAND` is always `uv run hotremove COMMAND` (quoted outputs aside:
    they are what the command prints)."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"<!-- output: .*?<!-- /output -->", "", text, flags=re.DOTALL)
    code = re.findall(r"```.*?```|`[^`\n]+`", text, flags=re.DOTALL)
    for snippet in code:
        for m in re.finditer(r"(?<![\w./-])hotremove (?P<cmd>[a-z][\w-]*)", snippet):
            if m["cmd"] not in _COMMANDS:
                continue
            before = snippet[: m.start()]
            assert before.endswith("uv run "), f"{page.name}: {snippet[m.start() :][:60]!r}"
