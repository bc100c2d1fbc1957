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
    ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": " "}]}',
     "line 2 has an empty response"),
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


def _planted(sizes: tuple[int, ...]):
    """Vectors around the corners of a cube, `sizes[c]` of them around corner c, in that order."""
    import numpy as np

    rng = np.random.default_rng(0)
    centres = np.eye(len(sizes)) * 10
    return np.concatenate([c + rng.normal(size=(n, len(sizes))) for c, n in zip(centres, sizes, strict=True)])


def test_kmeans_finds_planted_clusters() -> None:
    labels = kmeans_labels(_planted((30, 20, 10)), 3, seed=0)
    assert [len(g) for g in groups(labels, 3)] == [30, 20, 10]  # ids ordered by size
    assert len(set(labels[:30])) == 1
    with pytest.raises(HarnessError, match="K=61 clusters for 60 examples"):
        kmeans_labels(_planted((30, 20, 10)), 61, seed=0)


def test_random_control_is_a_seeded_permutation_cut_at_the_kmeans_sizes() -> None:
    """The control differs from k-means in membership only: random cluster c holds exactly as many examples as
    k-means cluster c (per index, not just the same sorted sizes, since random-cN is trained and compared beside
    dtm-cN), drawn at random: of planted cluster 0's 30 examples, random cluster 0 (30 of 60) holds about half."""
    import numpy as np

    km = kmeans_labels(_planted((30, 20, 10)), 3, seed=0)
    sizes = np.bincount(km).tolist()
    assert sizes == [30, 20, 10]
    control = random_labels(sizes, seed=0)
    assert np.bincount(control, minlength=3).tolist() == sizes and len(control) == 60
    assert control != km and 8 <= sum(c == 0 for c in control[:30]) <= 22
    assert random_labels(sizes, seed=0) == control and random_labels(sizes, seed=1) != control


TEXTS = ["tom has 3 apples", "how many apples", "the cat sat", "tom"]


def _tiny_encoder(folder: Path, cls: bool | None = None) -> Path:
    """A real random-weight BERT encoder with a word-level tokenizer ([CLS] ... [SEP]), like a downloaded
    sentence-transformers folder (1_Pooling/config.json when `cls` is given)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = sorted({w for t in TEXTS for w in t.split()})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", *words])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                ("[SEP]", 3)])
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]")
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)
    tok.save_pretrained(folder)
    if cls is not None:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"pooling_mode_cls_token": cls, "pooling_mode_mean_tokens": not cls}))
    return folder


@pytest.mark.parametrize("cls", [None, False, True])
def test_named_sentence_encoder_embeds_with_its_pooling(tmp_path: Path, cls: bool | None) -> None:
    """An encoder folder embeds by mean pooling over [CLS] text [SEP] (or at [CLS] when its pooling config says
    so), computed here by hand from BertModel."""
    import numpy as np
    import torch
    from transformers import AutoTokenizer, BertModel

    from harness.train.clusters import embed

    folder = _tiny_encoder(tmp_path / "enc", cls)
    ours = embed(folder, TEXTS, batch=3)
    model, tok = BertModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    for text, row in zip(TEXTS, ours, strict=True):
        ids = tok(text, return_tensors="pt")
        assert ids.input_ids[0, 0] == 2 and ids.input_ids[0, -1] == 3
        with torch.no_grad():
            hidden = model(**ids).last_hidden_state[0]
        want = hidden[0] if cls else hidden.mean(0)
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)


def test_base_causal_lm_embedding_is_its_final_hidden_state(tiny_llama) -> None:
    """For a causal LM (the base) the embedding is the mean of hidden_states[-1] over the text's own tokens,
    without special tokens: what the study clustered on before named encoders existed."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.train.clusters import embed

    folder = tiny_llama("base")
    ours = embed(folder, TEXTS, batch=2)
    model, tok = AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    for text, row in zip(TEXTS, ours, strict=True):
        ids = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            want = model(**ids, output_hidden_states=True).hidden_states[-1][0].mean(0)
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)


@pytest.mark.parametrize(("over", "says"), [
    ({"soup_lrs": [1e-3, 0.0]}, "soup_lrs.1: Input should be greater than 0"),
    ({"curve": [0.101, 0.104, 1.0]}, "curve fractions must differ in whole percents"),
])
def test_config_refuses_a_zero_soup_lr_and_curve_points_of_one_name(over: dict, says: str) -> None:
    """A soup lr of 0 would train at train.lr (0 is falsy) under a record saying 0; two curve points of one percent
    would share a model folder and a table row."""
    from harness.workflows.dtm_config import parse_config

    with pytest.raises(HarnessError, match=says):
        parse_config({"base": "b", "data": {"zoo": {"n": 10}}, "suites": ["zoo_math"], **over})


def test_random_clusters_are_random_whatever_the_files_order(tiny_llama, tmp_path: Path) -> None:
    """The random-cluster control of a study on a JSONL file: the study shuffles the data with its seed, and the
    random split used to shuffle its labels with a generator of the same seed, so it drew the same permutation
    and put line i of the file in cluster i % K: a file that alternates two kinds of example gave two pure
    clusters (shares 1.0 and 0.0). Counted here by hand: each random cluster holds about half of each kind; both
    clusterings partition the data (every example in exactly one cluster, none lost)."""
    from harness.workflows.dtm import Model, _clusters, _examples
    from harness.workflows.dtm_config import parse_config

    data = tmp_path / "alternating.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{'tom has' if i % 2 else 'which is more'} {i} ?",
                                        "response": f"{i}"}) + "\n" for i in range(200)))
    cfg = parse_config({"base": "b", "data": {"path": str(data)}, "k": 2, "suites": ["zoo_math"]})
    examples = _examples(cfg, tmp_path, tmp_path)
    labels = _clusters(cfg, Model("base", tiny_llama("base"), "base-id"), examples, tmp_path, tmp_path)
    for kind in ("kmeans", "random"):
        members = groups(labels[kind], 2)
        assert sorted(i for g in members for i in g) == list(range(200)), kind
    shares = [sum(examples[i].prompt.startswith("tom") for i in g) / len(g) for g in groups(labels["random"], 2)]
    assert [len(g) for g in groups(labels["random"], 2)] == [len(g) for g in groups(labels["kmeans"], 2)]
    assert all(0.35 < s < 0.65 for s in shares), shares


def test_training_data_holding_evaluated_questions_is_refused_before_training(results: Path, store,
                                                                            tmp_path: Path) -> None:
    """A study on a JSONL file that holds questions of a suite split it evaluates would score every model on
    questions it was trained on. Three of zoo_math's heldout questions (read from the suite's own data file; one with
    other case and spacing) among the zoo's instruction data are refused before anything is written or trained; the
    zoo's data alone (disjoint from every suite item by construction) passes the same check."""
    from harness.train.overlap import check_disjoint
    from harness.workflows.dtm import run_dtm, study_folder
    from harness.workflows.dtm_config import load_config
    from harness.zoo.instructions import zoo_instructions

    repo = Path(__file__).resolve().parent.parent
    heldout = [json.loads(line) for line in (repo / "suites/zoo/zoo_math/data/heldout.jsonl").read_text().splitlines()]
    clean = zoo_instructions(64, 0.5, 0)
    leaked = [Example(d["question"], d["answer"]) for d in heldout[5:8]]
    leaked[1] = Example("  " + leaked[1].prompt.upper().replace(" ", "   ") + " ", leaked[1].response)
    write_instructions(tmp_path / "clean.jsonl", clean)
    write_instructions(tmp_path / "leaky.jsonl", clean[:30] + leaked + clean[30:])
    check_disjoint(clean, ("zoo_math:heldout", "zoo_logic:heldout"), "the zoo's data")  # passes
    cfg = {"name": "leak", "base": "not-needed-before-training", "data": {"path": str(tmp_path / "leaky.jsonl")},
           "k": 2, "suites": ["zoo_math:heldout"], "limit": 6}
    (tmp_path / "leak.yaml").write_text(json.dumps(cfg))
    with pytest.raises(HarnessError, match=r"3 of the 67 training examples in .*leaky.jsonl pose a question the "
                                           r"study evaluates \(e\.g\. example 31: '.+' shares '.+' with "
                                           r"zoo_math:heldout zoo_math_\w+_heldout document 5\): .*remove them"):
        run_dtm(tmp_path / "leak.yaml", store=store)
    assert not study_folder(load_config(tmp_path / "leak.yaml")[0]).exists()  # refused before anything is written
    with pytest.raises(HarnessError, match="3 of the 67"):
        check_disjoint(read_instructions(tmp_path / "leaky.jsonl"), ("zoo_logic:heldout", "zoo_math:heldout"), "f")


def _heldout(suite: str) -> list[dict]:
    path = Path(__file__).resolve().parent.parent / f"suites/zoo/{suite}/data/heldout.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_question_inside_other_text_or_in_the_response_is_refused_and_a_near_miss_passes() -> None:
    """The exact check let through an evaluated question wrapped in "Question: ... Answer:" or placed in the
    response. Now: a zoo_math heldout question (17 words: 15-word runs) wrapped, one in a response, and a
    zoo_logic question (8 words, matched whole) wrapped are refused; a zoo_math question with its change edited,
    which shares no 13-word run with any heldout question by lm-eval's own n-grams, passes."""
    from lm_eval.decontamination.janitor import Janitor, word_ngrams

    from harness.train.overlap import check_disjoint
    from harness.zoo.instructions import zoo_instructions

    math, logic = _heldout("zoo_math"), _heldout("zoo_logic")
    q = next(d["question"] for d in math if "more" in d["question"])  # an addition: 17 words
    wrapped = Example(f"Question: {q.replace(' ?', '?').replace(' .', '.')}\nAnswer:", "the number")
    in_response = Example("Repeat this sentence word for word.", q.upper())
    short = Example(f"Question: {logic[3]['question']} Answer:", logic[3]["answer"])
    words = q.split()
    i = words.index("more") - 1
    words[i] = str(int(words[i]) + 30)  # "Leo buys 9 more" -> "Leo buys 39 more": every 13-word run holds it
    near = Example(" ".join(words), "?")
    janitor = Janitor()
    grams = {g for d in math for g in word_ngrams(janitor.normalize_string(d["question"]), 13)}
    assert not set(word_ngrams(janitor.normalize_string(near.text), 13)) & grams
    clean = zoo_instructions(40, 0.5, 0)
    check_disjoint([*clean, near], ("zoo_math:heldout", "zoo_logic:heldout"), "f")  # passes
    for leaked in (wrapped, in_response, short):
        with pytest.raises(HarnessError, match=r"1 of the 41 training examples in f pose a question the study "
                                               r"evaluates \(e\.g\. example 41: .* document \d+\)"):
            check_disjoint([*clean, leaked], ("zoo_math:heldout", "zoo_logic:heldout"), "f")
    with pytest.raises(HarnessError, match=r"3 of the 43 .*example 21: .*zoo_math:heldout zoo_math_\w+_heldout"):
        check_disjoint([*clean[:20], wrapped, in_response, short, *clean[20:]], ("zoo_math:heldout",
                                                                               "zoo_logic:heldout"), "f")


def test_runs_are_lm_evals_word_ngrams_and_the_zoos_data_is_clean_at_n_not_at_13() -> None:
    """Our words and runs equal lm-eval's (Janitor.normalize_string, word_ngrams) on ASCII text. At lm-eval's 13 the
    zoo's own stories that differ from a heldout zoo_math question in the first amount only share a run with it
    (19 of 2,000); at N = 15 none does, since every 15-word run of a zoo_math question holds the whole question."""
    from lm_eval.decontamination.janitor import Janitor, word_ngrams

    from harness.train.overlap import N, ngrams, shared_run, suite_runs, words
    from harness.zoo.instructions import zoo_instructions

    texts = ["Question: What's 2+2?\n\nA. 3\tB. 4  C. (five)\nAnswer:", "  ,, I'm a very !dirty,, ,,  dirty boy. "
             "Clean me daddy. \n\nhe he he hehe heh.  lastword  " * 2, "Tom has 9 hats . Tom gets 9 more hats .", "."]
    for text in texts:
        for n in (1, 3, 13):
            assert list(ngrams(words(text), n)) == list(word_ngrams(Janitor().normalize_string(text), n))
    examples, suites = zoo_instructions(2000, 0.4, 0), ("zoo_math:heldout", "zoo_logic:heldout")
    runs_13, runs = suite_runs(suites, 13), suite_runs(suites)
    at_13 = [e for e in examples if shared_run(e.text, runs_13)]
    assert N == 15 and len(at_13) == 19 and not [e for e in examples if shared_run(e.text, runs)]
    run, where = shared_run(at_13[0].text, runs_13)
    asked = _heldout("zoo_math")[int(where.rsplit(" ", 1)[1])]["question"]
    assert at_13[0].prompt != asked and at_13[0].prompt.split()[3:] == asked.split()[3:]  # only "X has N" differs


def test_study_control_has_the_kmeans_sizes_when_they_are_uneven(tiny_llama, tmp_path: Path) -> None:
    """A file of 150 word problems and 50 comparisons: k-means (on the base's embeddings) splits it 150 / 50 by
    kind. The control was an even split (100 / 100), so it differed from k-means in sizes as well as membership and
    the study could not attribute a difference to the clustering. Now random cluster c has k-means cluster c's size
    (counted here from the labels) with random members: the 50-example random cluster is not the 50 comparisons but
    holds about their overall share (25%). The sizes are recorded in clusters.json."""
    from collections import Counter

    from harness.workflows.dtm import Model, _clusters, _examples
    from harness.workflows.dtm_config import parse_config

    data = tmp_path / "uneven.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"tom has {i} apples and gets {i} more apples . how many apples "
                                                  "does tom have now ?" if i % 4 else f"which is more : {i} or 7 ?",
                                        "response": f"{i}"}) + "\n" for i in range(200)))
    cfg = parse_config({"base": "b", "data": {"path": str(data)}, "k": 2, "suites": ["zoo_math"]})
    examples = _examples(cfg, tmp_path, tmp_path)
    labels = _clusters(cfg, Model("base", tiny_llama("base"), "base-id"), examples, tmp_path, tmp_path)
    kmeans, control = Counter(labels["kmeans"]), Counter(labels["random"])
    comparisons = [examples[i].prompt.startswith("which") for i in range(200)]
    assert [kmeans[0], kmeans[1]] == [150, 50]  # uneven: the premise
    assert all(comparisons[i] for i, c in enumerate(labels["kmeans"]) if c == 1)  # k-means' small cluster: by kind
    assert [control[0], control[1]] == [kmeans[0], kmeans[1]]  # per index
    assert labels["random"] != labels["kmeans"]
    assert 0.1 < sum(comparisons[i] for i, c in enumerate(labels["random"]) if c == 1) / 50 < 0.45
    record = json.loads((tmp_path / "clusters.json").read_text())
    assert record["sizes"] == {"kmeans": [150, 50], "random": [150, 50]}
