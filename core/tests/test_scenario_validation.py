"""Scenario files: every bad value is one line that names the key."""

from __future__ import annotations

import re

import pytest

from hotremove.errors import ScenarioError
from hotremove.scenario import load, loads, parse_size

FS = '[[filesystem]]\nname = "a"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[memory]\nsizee = 1", "memory.sizee: unknown key"),
        ('[memory]\nsize = "lots"', "memory.size"),
        ('[memory]\nsize = "100MiB"\nblock_size = "64MiB"', "memory.size"),
        (FS + "block_size = 512", "filesystem[0].block_size"),
        (FS + 'type = "nosuchfs"', "filesystem[0].type"),
        (FS + 'options = ["nobh"]\ntype = "ext3"', "filesystem[0].options"),
        (FS + 'options = ["data=journal"]', "filesystem[0].options"),
        (FS + 'files = 100000\nfile_size = "1MiB"', "filesystem[0].files"),
        (FS + 'size = "100GiB"', "filesystem[0].size"),
        # what 'run' would refuse, 'scenario check' refuses (mke2fs: no room for a journal;
        # a file as large as its image leaves none for the inode tables)
        (FS + 'type = "ext3"\nsize = "1MiB"\nfiles = 1\nfile_size = "4KiB"', "filesystem[0].size"),
        (FS + 'files = 1\nfile_size = "8MiB"\nsize = "8MiB"', "filesystem[0].files"),
        ("[workload]\ndirty = 2", "workload.dirty"),
        ('[workload]\nplacement = "random"', "workload.placement"),
        ("[remove]\nblocks = [9]", "remove.blocks"),
        ("[remove]\nblocks = [0, 1, 2, 3]", "remove.blocks"),
        ('[remove]\nmode = "fast"', "remove.mode"),
        ('[device]\npreset = "floppy"', "device.preset"),
        (FS + "\n" + FS, "filesystem"),
    ],
)
def test_bad_value_names_the_key(text, key):
    with pytest.raises(ScenarioError) as info:
        loads(text)
    message = str(info.value)
    assert message.startswith(key), message
    assert "\n" not in message


def test_malformed_toml_and_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="invalid TOML"):
        loads("[memory\nsize=1")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load(tmp_path / "nope.toml")


def test_defaults_and_sizes():
    scenario = loads(FS)
    assert scenario.memory.size == 512 << 20 and scenario.filesystem[0].type == "ext2"
    assert parse_size("1GiB") == 1 << 30 and parse_size("64KiB") == 65536
    assert parse_size(4096) == 4096
    assert scenario.filesystem[0].data_mode is None
    assert loads(FS + 'type = "ext3"').filesystem[0].data_mode == "ordered"


def test_overrides_revalidate():
    scenario = loads(FS)
    assert scenario.with_overrides(remove={"mode": "async"}).remove.mode == "async"
    with pytest.raises(ScenarioError, match=r"remove\.mode"):
        scenario.with_overrides(remove={"mode": "bogus"})


def test_an_empty_scenario_is_an_error_that_says_what_a_scenario_needs() -> None:
    with pytest.raises(ScenarioError, match=r"^empty.toml: empty scenario: describe at least"):
        loads("# nothing here\n", source="empty.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[remove]\nstrategi = "auto"\n',
            "remove.strategi: unknown key (did you mean 'strategy'?)",
        ),
        ("[kernal]\n", "kernal: unknown key (did you mean 'kernel'?)"),
        (
            '[[filesystem]]\nname = "a"\nfile_sise = 1\n',
            "filesystem[0].file_sise: unknown key (did you mean 'file_size'?)",
        ),
        ('[kernel]\nversion = "6.2"\n', "kernel.version: unknown kernel '6.2'"),
    ],
)
def test_unknown_keys_and_versions_suggest_what_was_meant(text: str, message: str) -> None:
    with pytest.raises(ScenarioError, match="^" + re.escape(message)):
        loads(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[workload]\ndirty = true", "workload.dirty"),
        ('[workload]\ndirty = "0.5"', "workload.dirty"),
        (FS + 'files = "16"', "filesystem[0].files"),
        (FS + "files = 16.0", "filesystem[0].files"),
        (FS + "files = true", "filesystem[0].files"),
        (FS + "block_size = 1024.0", "filesystem[0].block_size"),
        ('[remove]\nchecks = "yes"', "remove.checks"),
        ("[remove]\nchecks = 1", "remove.checks"),
        ("[remove]\nblocks = [1, 1]", "remove.blocks"),
        ('[remove]\nblocks = ["1"]', "remove.blocks"),
        ('[workload]\nseed = "１６"', "workload.seed"),  # full-width digits
        ("[kernel]\ndirty_writeback_centisecs = 5.5", "kernel.dirty_writeback_centisecs"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(text: str, key: str) -> None:
    """TOML gives each value its type: a string, boolean or float where the schema wants
    another type is a typo the user hears about in one line, never a silent coercion."""
    with pytest.raises(ScenarioError) as info:
        loads(text)
    message = str(info.value)
    assert message.startswith(key), message
    assert "\n" not in message


def test_an_integer_is_a_valid_share_and_a_size_string_a_valid_size() -> None:
    """Strict is not pedantic: ``dirty = 1`` is the share 1.0 and sizes take their strings."""
    scn = loads('[workload]\ndirty = 1\n[memory]\nsize = "512MiB"\nblock_size = 134217728')
    assert scn.workload.dirty == 1.0 and scn.memory.size == 512 << 20
