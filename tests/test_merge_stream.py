"""Merging in bounded memory (harness/merge/stream.py): the sharded output is the very files mergekit-yaml writes with
the same --out-shard-size, its tensors equal mergekit-yaml's default output, and the peak memory stays near one
shard however large the inputs are."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_merge import assert_same, load_folder, recipes, write_recipe, zoo  # noqa: F401 (fixture)

MERGEKIT_YAML = Path(sys.executable).parent / "mergekit-yaml"


def file_hashes(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()
            for f in folder.iterdir() if f.name.startswith("model") and f.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["ties", "passthrough"])
def test_sharded_merge_is_mergekit_yaml_byte_for_byte(method, zoo, store, results, tmp_path):  # noqa: F811
    from mergekit.io.tasks import LoaderCache

    from harness.merge import merge_to_folder

    path = write_recipe(tmp_path, method, recipes(zoo)[method])
    shard = 60_000  # bytes: several shards from these tiny models
    ours = merge_to_folder(path, seed=3, store=store, shard_bytes=shard).path
    for out, extra in (("peer_sharded", ["--out-shard-size", str(shard)]), ("peer", [])):
        subprocess.run([str(MERGEKIT_YAML), str(path), str(tmp_path / out), "--random-seed", "3", "--quiet", *extra],
                       check=True, capture_output=True)
    hashes = file_hashes(ours)
    assert len([n for n in hashes if n.endswith(".safetensors")]) > 2
    assert hashes == file_hashes(tmp_path / "peer_sharded")  # shards and index, byte for byte
    assert_same(load_folder(ours), load_folder(tmp_path / "peer"))  # per tensor, against the default layout
    assert not any(type(v).__name__ == "ReleasingLoader" for v in LoaderCache().loaders.values())


# VmHWM is this process's own peak since exec (ru_maxrss would also count the forking parent's size at the fork)
PEAK_SCRIPT = """
import sys
import torch, transformers, mergekit.merge, mergekit.io.tasks, duckdb, harness.store
from harness.merge import merge_to_folder
def hwm():
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024
base = hwm()
merge_to_folder(sys.argv[1], shard_bytes=int(sys.argv[2]))
print(base, hwm())
"""


@pytest.mark.slow
def test_peak_memory_is_one_shard_not_the_inputs(results, tmp_path):
    """Three float32 models of 85 MB: the merge adds one shard (16 MB) and one merge step (mergekit's linear holds
    the inputs, their stack, the weighted stack and the sum: ~11 tensors of at most 8.4 MB) to what the imports take;
    not the inputs (255 MB) nor the output. Measured: +110 MB; without the bounds (mapped inputs, one 5 GB shard)
    +400 MB."""
    from tests.factories import make_tiny_llama

    models = [make_tiny_llama(tmp_path / f"m{i}", seed=i, hidden=1024, intermediate=2048, layers=2, heads=16)
              for i in range(3)]
    inputs = sum(f.stat().st_size for m in models for f in m.glob("*.safetensors"))
    path = write_recipe(tmp_path, "big", {"merge_method": "linear", "models": [
        {"model": str(m), "parameters": {"weight": 1.0}} for m in models]})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path), "16000000"], env=env,
                         check=True, capture_output=True, text=True)
    base, peak = (int(x) for x in run.stdout.split())
    largest = 2048 * 1024 * 4
    assert inputs > 250e6
    assert peak - base < 16_000_000 + 16 * largest, (peak - base, inputs)
