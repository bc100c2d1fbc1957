"""harness.train.overlap on scripts written without spaces between words (Japanese, Chinese, Thai): each of their
characters is a word, so a question wrapped in other text with no space around it is still caught."""

from __future__ import annotations

import csv
import string
import unicodedata
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.train.instructions import Example

# The suite's copy of MGSM: byte-identical to /work/shared/data/mgsm (see its PROVENANCE.md; CC BY 4.0).
MGSM = Path(__file__).resolve().parent.parent / "suites/mgsm/data"
WRAP = {"ja": ("問題：", "答え："), "zh": ("问题：", "答案："), "th": ("โจทย์：", "คำตอบ：")}


def _questions(lang: str) -> list[str]:
    with open(MGSM / f"mgsm_{lang}.tsv", encoding="utf-8", newline="") as f:
        return [row[0] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]


def _old_words(text: str) -> list[str]:
    """lm-eval's words as overlap.py split them before: NFKC, case folding, ASCII punctuation deleted, whitespace."""
    return unicodedata.normalize("NFKC", text).casefold().translate(str.maketrans("", "", string.punctuation)).split()


def test_spaced_text_keeps_its_words() -> None:
    """English (and every script written with spaces: Cyrillic, Hangul, Latin with accents) splits as before."""
    from harness.train.overlap import words

    texts = ["Question: What's 2+2?\n\nA. 3\tB. 4  C. (five)\nAnswer:", "Janet’s ducks lay 16 eggs per day. She "
             "eats three for breakfast every morning and bakes muffins for her friends every day with four.",
             "  ,, I'm a very !dirty,, ,,  dirty boy. ", "ÉCOLE Straße ﬁne", "Джанет держит уток.",
             "자넷의 오리는 하루에 16개의 알을 낳습니다.", "."]
    for text in texts:
        assert words(text) == _old_words(text), text
    assert words("Tom's 3 hats, (really)!") == ["toms", "3", "hats", "really"]


def test_characters_of_unspaced_scripts_are_words_each() -> None:
    """Worked by hand: a Han, kana or Thai character is a word; a Latin word or a number stays whole beside them; the
    ideographic comma and full stop part words as a space does."""
    from harness.train.overlap import words

    assert words("Tomは3個のりんご") == ["tom", "は", "3", "個", "の", "り", "ん", "ご"]
    assert words("東京Tower、100、200。") == ["東", "京", "tower", "100", "200"]
    assert words("我有2个苹果") == ["我", "有", "2", "个", "苹", "果"]
    assert words("แมว 2 ตัว") == ["แ", "ม", "ว", "2", "ต", "ั", "ว"]


@pytest.mark.parametrize("lang", ["ja", "zh", "th"])
def test_each_mgsm_question_wrapped_without_spaces_is_caught(lang: str) -> None:
    """Each of the 250 real MGSM questions of the language, with a prefix and a suffix and no space around it,
    shares a run with its own question (before: a ja or zh question was a handful of "words" and the wrapped one
    shared none, so a contaminated fine-tune passed)."""
    from harness.train.overlap import document_runs, shared_run

    questions = _questions(lang)
    before, after = WRAP[lang]
    missed = []
    for i, q in enumerate(questions):
        length, runs = document_runs(q)
        if not shared_run(before + q + after, {length: dict.fromkeys(runs, f"document {i}")}):
            missed.append(i)
    assert len(questions) == 250 and not missed, f"{len(missed)} missed, e.g. {questions[missed[0]]!r}"


@pytest.mark.parametrize("lang", ["ja", "zh", "th"])
def test_distinct_mgsm_questions_do_not_catch_each_other(lang: str) -> None:
    """No real MGSM question of the language is taken for another one of the 250 (no false contamination), at the
    character run length; at 20 characters the Thai questions (about 180 characters each) do catch each other."""
    from harness.train.overlap import document_runs, shared_run

    questions = _questions(lang)

    def false_hits(**length: int) -> list[tuple[int, str]]:
        docs = [document_runs(q, **length) for q in questions]
        hits = []
        for i, q in enumerate(questions):
            others: dict[int, dict[str, str]] = {}
            for j, (n, runs) in enumerate(docs):
                if j != i:
                    others.setdefault(n, {}).update(dict.fromkeys(runs, str(j)))
            if hit := shared_run(q, others):
                hits.append((i, hit[1]))
        return hits

    assert false_hits() == []
    if lang == "th":
        assert false_hits(n_chars=20)


def test_a_wrapped_question_in_an_english_text_is_refused_against_the_mgsm_suite() -> None:
    """End to end on the real suite as lm-eval renders it (mgsm:lm_eval_direct, 11 languages): the zoo's English
    data passes; one ja, one zh and one th question, each wrapped without spaces inside an English instruction, are
    refused, the first named with its own task and document."""
    from harness.train.overlap import check_disjoint
    from harness.zoo.instructions import zoo_instructions

    clean = zoo_instructions(40, 0.5, 0)
    check_disjoint(clean, ("mgsm:lm_eval_direct",), "f")  # passes
    leaked = [Example(f"Translate to English:{WRAP[lang][0]}{_questions(lang)[k]}{WRAP[lang][1]}", "ok")
              for lang, k in (("ja", 7), ("zh", 100), ("th", 249))]
    with pytest.raises(HarnessError, match=r"3 of the 43 training examples in f pose a question the study evaluates "
                                           r"\(e\.g\. example 41: .* with mgsm:lm_eval_direct mgsm_direct_ja "
                                           r"document 7\)"):
        check_disjoint([*clean, *leaked], ("mgsm:lm_eval_direct",), "f")
