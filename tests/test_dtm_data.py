"""harness dtm's parts without training: instruction data, the zoo's writer, clustering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.train.clusters import groups, kmeans_labels, random_labels
from harness.train.instructions import Example, read_instructions, write_instructions


def test_reads_prompt_response_and_messages(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "2 plus 2 ?", "response": "4"}) + "\n\n"
                 + json.dumps({"messages": [{"role": "system", "content": "be brief"},
                                            {"role": "user", "content": "hi ?"},
                                            {"role": "assistant", "content": "hello"}]}) + "\n")
    assert read_instructions(f) == [Example("2 plus 2 ?", "4"), Example("be brief hi ?", "hello")]


@pytest.mark.parametrize(("line", "says"), [
    ("{not json", "line 2 is not JSON"),
    ('{"prompt": "q"}', "line 2 lacks a string 'response'"),
    ('{"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]}',
     "line 2: the last message is not the assistant's"),
    ('{"messages": [{"role": "user"}]}', "line 2: a message lacks"),
    ("[1, 2]", "line 2 is not a JSON object"),
])
def test_bad_lines_name_their_number(tmp_path: Path, line: str, says: str) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "q", "response": "a"}) + "\n" + line + "\n")
    with pytest.raises(HarnessError, match=says) as err:
        read_instructions(f)
    assert err.value.exit_code == 2 and "\n" not in str(err.value)


def test_unreadable_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="cannot read the instruction file"):
        read_instructions(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(HarnessError, match="has no examples"):
        read_instructions(tmp_path / "empty.jsonl")


def test_zoo_instructions_mix_bias_and_round_trip(tmp_path: Path) -> None:
    from harness.zoo.instructions import zoo_instructions
    from harness.zoo.suitegen import english_questions

    ex = zoo_instructions(300, biased=0.5, seed=1)
    assert ex == zoo_instructions(300, biased=0.5, seed=1)  # seeded
    assert len({e.prompt for e in ex}) == 300 and not {e.prompt for e in ex} & english_questions()
    word_problems = [e for e in ex if "How many" in e.prompt]
    adds = sum(" more " in e.prompt for e in word_problems)  # a story says "gets 3 more" only for a gain
    assert len(word_problems) == 150 + 50 and adds >= 150 and 0 < len(word_problems) - adds <= 50
    write_instructions(tmp_path / "z.jsonl", ex)
    assert read_instructions(tmp_path / "z.jsonl") == ex


def test_kmeans_finds_planted_clusters_and_random_is_even() -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    centres = np.eye(3) * 10
    vecs = np.concatenate([c + rng.normal(size=(n, 3)) for c, n in zip(centres, (30, 20, 10), strict=True)])
    labels = kmeans_labels(vecs, 3, seed=0)
    assert [len(g) for g in groups(labels, 3)] == [30, 20, 10]  # ids ordered by size
    assert len(set(labels[:30])) == 1
    assert sorted(len(g) for g in groups(random_labels(10, 3, seed=0), 3)) == [3, 3, 4]
    with pytest.raises(HarnessError, match="K=11 clusters for 10 examples"):
        random_labels(10, 11, seed=0)
    with pytest.raises(HarnessError, match="K=61 clusters for 60 examples"):
        kmeans_labels(vecs, 61, seed=0)
