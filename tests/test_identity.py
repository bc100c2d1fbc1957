"""The one model identity stays what existing stores hold: the id of a folder is the sha256 of its defining files
(name, NUL, bytes, NUL, in name order), whatever chunk size the hashing reads with."""

from __future__ import annotations

import hashlib
from pathlib import Path

# hash_model_dir of `folder_with_known_id` as computed by main at dbe08f7 (8 MiB chunks), before this branch
KNOWN_ID = "804256c5d42edd12aa42ac78ea2e0fb55217afdf52721ef4c4f63057930f43e6"


def folder_with_known_id(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    # 2.5 MiB + 3 bytes: crosses several read chunks and ends mid-chunk
    (folder / "model.safetensors").write_bytes(bytes((i * 7 + (i >> 11)) % 251 for i in range((5 << 20) // 2 + 3)))
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "tokenizer.json").write_text('{"t": [1, 2]}')
    (folder / "README.md").write_text("not part of the id")
    return folder


def test_model_id_is_unchanged_and_matches_its_definition(tmp_path, results):
    from harness.hashing import hash_model_dir
    from harness.identity import model_id

    folder = folder_with_known_id(tmp_path / "m")
    h = hashlib.sha256()
    for f in sorted(p for p in folder.iterdir() if p.name != "README.md"):
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    assert hash_model_dir(folder) == h.hexdigest() == KNOWN_ID
    assert model_id(folder) == KNOWN_ID  # computed, then remembered
    assert model_id(folder) == KNOWN_ID
    (folder / "README.md").write_text("cards do not change the id")
    assert model_id(folder) == KNOWN_ID
    (folder / "config.json").write_text('{"a": 22}')  # another size: a new signature even within one mtime tick
    assert model_id(folder) != KNOWN_ID


def test_a_memo_keeps_the_entries_written_last(results):
    from harness.identity import memo

    for i in range(7):
        memo("bounded", f"k{i}", i, keep=4)
    memo("bounded", "k4", "again", keep=4)  # written again: now the newest
    kept = memo("bounded")
    assert list(kept) == ["k3", "k5", "k6", "k4"]
    assert kept["k4"] == "again"
    assert (results / "cache" / "bounded.json").is_file()
