"""Issue 19: a config file written in place while it is read (SIGHUP in the middle of an editor's save or a
`cat > file`) is read again, so that a start or a reload never applies a half-written file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exporter.config import ConfigError, load_config, yamlfile


def config_text(n: int) -> str:
    return "chargers:\n" + "".join(
        f"  - {{name: bay-{i:03d}, url: 'http://192.0.2.{i % 250 + 1}'}}\n" for i in range(n)
    )


FULL = config_text(200)
# What a reader sees in the middle of a non-atomic write: the first chargers, cut at a line end (valid YAML).
HALF = FULL[: FULL.index("  - {name: bay-044")]


def finish_the_write_after_the_first_read(monkeypatch: pytest.MonkeyPatch, path: Path, text: str) -> list[int]:
    """The writer completes the file right after the exporter's first read of it: the worst case for a reload."""
    reads: list[int] = []
    real = yamlfile._read_once

    def read_once(file_path: Path, max_bytes: int) -> tuple[bytes, os.stat_result, os.stat_result]:
        data, before, _ = real(file_path, max_bytes)
        reads.append(len(data))
        if len(reads) == 1:
            path.write_text(text)
        return data, before, os.stat(file_path)  # as fstat after the read would have seen it

    monkeypatch.setattr(yamlfile, "_read_once", read_once)
    return reads


def test_a_file_completed_during_the_read_is_read_again_in_full(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pulsatrix.yml"
    path.write_text(HALF)
    assert len(load_config(path, env={}).chargers) == 44  # on its own, the half file is a valid config

    reads = finish_the_write_after_the_first_read(monkeypatch, path, FULL)
    config = load_config(path, env={})
    assert len(config.chargers) == 200, "the half-written file was applied"
    assert reads[0] == len(HALF) and reads[-1] == len(FULL)


def test_a_file_replaced_by_rename_during_the_read_is_read_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pulsatrix.yml"
    path.write_text(config_text(3))
    real = yamlfile._read_once
    reads: list[int] = []

    def read_once(file_path: Path, max_bytes: int) -> tuple[bytes, os.stat_result, os.stat_result]:
        result = real(file_path, max_bytes)
        reads.append(len(result[0]))
        if len(reads) == 1:  # the same size, another inode: only the inode tells
            (tmp_path / "new.yml").write_text(config_text(3).replace("192.0.2.", "198.51.100."))
            os.replace(tmp_path / "new.yml", path)
        return result

    monkeypatch.setattr(yamlfile, "_read_once", read_once)
    config = load_config(path, env={})
    assert config.chargers[0].url == "http://198.51.100.1"
    assert len(reads) >= 2


def test_a_file_that_never_stops_changing_is_refused_and_names_the_cure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "pulsatrix.yml"
    path.write_text(FULL)
    real = yamlfile._read_once
    reads: list[int] = []

    def read_once(file_path: Path, max_bytes: int) -> tuple[bytes, os.stat_result, os.stat_result]:
        result = real(file_path, max_bytes)
        reads.append(1)
        with path.open("a") as f:  # a writer appending all the time
            f.write(f"# {len(reads)}\n")
        return result

    monkeypatch.setattr(yamlfile, "_read_once", read_once)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        "cannot read config file: it changed while it was read, 5 times in a row; write it atomically "
        "(a complete file renamed into place)"
    ]
    assert len(reads) <= 2 * yamlfile.READ_ATTEMPTS  # bounded: a reload does not spin


def test_an_unchanged_file_is_read_twice_at_most(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "pulsatrix.yml"
    path.write_text(FULL)
    real = yamlfile._read_once
    reads: list[int] = []

    def read_once(file_path: Path, max_bytes: int) -> tuple[bytes, os.stat_result, os.stat_result]:
        reads.append(1)
        return real(file_path, max_bytes)

    monkeypatch.setattr(yamlfile, "_read_once", read_once)
    assert len(load_config(path, env={}).chargers) == 200
    assert len(reads) == 2  # the read and the check that an immediate re-read gives the same bytes
