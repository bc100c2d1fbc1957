"""The ensemble backend: a hand computation of averaged token log-probabilities, and one member equals lm-eval's
own hf backend request by request."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.evaluate.backends.base import BackendOptions
from harness.evaluate.backends.ensemble import ensemble_folder, make_lm
from harness.hashing import hash_model_dir

REQUESTS = [("tom has 3 apples . how many apples ?", " 3 apples"), ("ana has", " 4"), ("what is", " 5 plus 2")]


def _instances(kind: str, args: list[tuple]) -> list:
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def _by_hand(folder: Path, context: str, continuation: str) -> tuple[float, list[int]]:
    """The continuation's log-likelihood under one model, and the argmax token at each of its positions."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = model(torch.tensor([whole])).logits[0].log_softmax(-1)
    positions = range(len(ctx) - 1, len(whole) - 1)
    return sum(float(logp[p, whole[p + 1]]) for p in positions), [int(logp[p].argmax()) for p in positions]


def test_ensemble_is_the_mean_of_its_members_log_probs(tiny_llama, tmp_path: Path) -> None:
    a, b = tiny_llama("a", seed=0), tiny_llama("b", seed=1)
    folder = ensemble_folder([(a, hash_model_dir(a)), (b, hash_model_dir(b))], tmp_path / "ens")
    lm = make_lm(folder, BackendOptions(device="cpu", add_bos_token=False, batch_size=2))
    got = lm.loglikelihood(_instances("loglikelihood", REQUESTS))  # two batches, left-padded
    one = make_lm(folder, BackendOptions(device="cpu", add_bos_token=False, batch_size=1))
    for (ll, greedy), (ll1, greedy1) in zip(got, one.loglikelihood(_instances("loglikelihood", REQUESTS)),
                                            strict=True):
        assert ll == pytest.approx(ll1, abs=1e-5) and greedy == greedy1  # padding changes nothing
    for (context, continuation), (ll, _greedy) in zip(REQUESTS, got, strict=True):
        la, _ = _by_hand(a, context, continuation)
        lb, _ = _by_hand(b, context, continuation)
        assert ll == pytest.approx((la + lb) / 2, abs=1e-4)  # mean of per-token log-probs, summed
        assert la != pytest.approx(lb, abs=1e-3)  # the members disagree: the test can fail
    # the folder's identity follows its members
    other = ensemble_folder([(a, hash_model_dir(a))], tmp_path / "ens1")
    assert hash_model_dir(other) != hash_model_dir(folder)


@pytest.mark.slow
def test_one_member_equals_lm_evals_hf_backend(tiny_llama, tmp_path: Path) -> None:
    from lm_eval.models.huggingface import HFLM

    a = tiny_llama("a", seed=2)
    ens = make_lm(ensemble_folder([(a, hash_model_dir(a))], tmp_path / "e"), BackendOptions(device="cpu",
                                                                                          add_bos_token=False))
    hf = HFLM(pretrained=str(a), device="cpu", batch_size=4, add_bos_token=False)
    mine = ens.loglikelihood(_instances("loglikelihood", REQUESTS))
    theirs = hf.loglikelihood(_instances("loglikelihood", REQUESTS))
    for (l1, g1), (l2, g2) in zip(mine, theirs, strict=True):
        assert l1 == pytest.approx(l2, abs=1e-4) and g1 == g2
    gen = [("tom has 3 apples", {"until": ["?"], "max_gen_toks": 4, "do_sample": False})]
    assert ens.generate_until(_instances("generate_until", gen)) == hf.generate_until(_instances("generate_until",
                                                                                                 gen))
    rolling = [("tom has 3 apples . ana has 4 pears .",)]
    assert ens.loglikelihood_rolling(_instances("loglikelihood_rolling", rolling))[0] == pytest.approx(
        hf.loglikelihood_rolling(_instances("loglikelihood_rolling", rolling))[0], abs=1e-3)


def test_a_member_changed_since_the_ensemble_was_made_is_refused(tiny_llama, tmp_path: Path, results: Path) -> None:
    """The folder's identity (and so every run id and request cache key) is its members' ids when it was made: a
    member whose folder now holds other weights would be scored under the old identity."""
    from harness.errors import HarnessError

    a, b = tiny_llama("a", seed=0), tiny_llama("b", seed=1)
    folder = ensemble_folder([(a, hash_model_dir(a)), (b, hash_model_dir(b))], tmp_path / "ens")
    before = hash_model_dir(folder)
    lb_before, _ = _by_hand(b, *REQUESTS[0])
    tiny_llama("b", seed=5)  # the member's folder is overwritten with another model
    assert _by_hand(b, *REQUESTS[0])[0] != pytest.approx(lb_before, abs=1e-3) and hash_model_dir(folder) == before
    with pytest.raises(HarnessError, match="changed since the ensemble was made"):
        make_lm(folder, BackendOptions(device="cpu", add_bos_token=False))


def test_an_ensembles_id_is_its_members_ids_wherever_they_are(tiny_llama, tmp_path: Path, results: Path) -> None:
    """The same members in two folders (the same study run from another results folder) make one ensemble id, so
    its runs are shared; the id follows the members' ids, and the folder still finds (and checks) its members."""
    import shutil

    from harness.evaluate.backends.ensemble import checked_members
    from harness.weights import weight_folders

    a, b = tiny_llama("a", seed=0), tiny_llama("b", seed=1)
    ids = [hash_model_dir(a), hash_model_dir(b)]
    ens = {}
    for where in ("here", "there"):
        members = [shutil.copytree(m, tmp_path / where / "models" / m.name) for m in (a, b)]
        assert [hash_model_dir(m) for m in members] == ids  # copies: the same model ids
        ens[where] = ensemble_folder([(m, i) for m, i in zip(members, ids, strict=True)], tmp_path / where / "ens")
        assert checked_members(ens[where]) == [m.resolve() for m in members] == weight_folders(ens[where])
    assert hash_model_dir(ens["here"]) == hash_model_dir(ens["there"])
    c = tiny_llama("c", seed=2)
    other = ensemble_folder([(a, ids[0]), (c, hash_model_dir(c))], tmp_path / "other")
    assert hash_model_dir(other) != hash_model_dir(ens["here"])
