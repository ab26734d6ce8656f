"""JSON Lines: a torn last line is skipped with a warning, and the next append survives it."""

from __future__ import annotations

import json
import logging

import numpy as np

from attribnet.data.cache import FaceCache
from attribnet.data.manifest import ManifestRow
from attribnet.files.jsonl import append_jsonl, read_jsonl, write_jsonl

TORN = '{"epoch": 1, "lr": 0.1}\n{"epoch": 2, "l'


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text(TORN)
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == [{"epoch": 1, "lr": 0.1}]
    assert "metrics.jsonl:2: ignoring an unfinished line" in caplog.text


def test_an_append_after_a_torn_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(TORN)
    append_jsonl(path, {"epoch": 2, "lr": 0.05})
    append_jsonl(path, {"epoch": 3, "lr": 0.01})
    assert [r["epoch"] for r in read_jsonl(path)] == [1, 2, 3]
    assert path.read_text().splitlines()[1] == '{"epoch": 2, "l'  # the torn line stays


def test_append_creates_and_round_trips(tmp_path):
    path = tmp_path / "new.jsonl"
    assert read_jsonl(path) == []
    records = [{"a": 1}, {"b": [1, 2]}, {"c": None}]
    for record in records:
        append_jsonl(path, record)
    assert read_jsonl(path) == records
    assert path.read_text() == "".join(json.dumps(r) + "\n" for r in records)
    write_jsonl(path, records[:1])
    assert read_jsonl(path) == records[:1]


def test_lines_that_are_not_objects_are_skipped(tmp_path, caplog):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n3\n[1]\n{"b": 2}\n')
    with caplog.at_level(logging.WARNING):
        assert read_jsonl(path) == [{"a": 1}, {"b": 2}]
    assert caplog.text.count("ignoring an unfinished line") == 2


def test_a_cache_record_written_after_a_torn_index_line_is_kept(tmp_path, caplog):
    videos = [tmp_path / f"v{i}.mp4" for i in range(2)]
    for video in videos:
        video.write_bytes(b"stand-in")
    rows = [ManifestRow(str(v), "gen0", "crf0", v.stem, "train") for v in videos]
    frames = np.zeros((2, 8, 8, 3), np.uint8)
    cache = FaceCache(tmp_path / "cache", {"size": 8})
    cache.add(rows[0], frames)
    index = tmp_path / "cache" / "index.jsonl"
    with open(index, "a") as f:
        f.write('{"key": "abc", "row": {"pa')  # a writer killed mid-line
    FaceCache(tmp_path / "cache", {"size": 8}).add(rows[1], frames)
    with caplog.at_level(logging.WARNING):
        reopened = FaceCache(tmp_path / "cache")
    assert [e.row.path for e in reopened.entries] == [r.path for r in rows]
    assert "index.jsonl:2: ignoring an unfinished line" in caplog.text
