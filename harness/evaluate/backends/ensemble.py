"""A K-model ensemble: every token's log-probability is the average of its members' log-probabilities.

An ensemble is a folder made by `ensemble_folder(members, out)`: the first member's tokenizer and config.json,
with the members' content ids listed under config.json's `harness_ensemble` key, so the folder's content hash, and
every run id, changes with its members and only with them: their paths are in ensemble_members.json, which is no
model file, so the same members in another folder make the same ensemble. Evaluate it like any model:

    harness eval results/ensembles/E --suite zoo_math --backend ensemble

Scores: a continuation's log-likelihood is the sum over its tokens of mean_k log p_k(token | prefix); it is greedy
when each token is the argmax of mean_k log p_k; generation is greedy on the same average. One member gives exactly
the member's own scores. The members must share the tokenizer (checked on load). Log-likelihood requests run in
batches (left-padded, positions counted from each row's first real token) and the members' heads are applied only at
the continuations' positions: K forward passes per batch, K times a single model's cost. Generation is one greedy
token at a time.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import atomic_dir
from harness.errors import HarnessError
from harness.evaluate.backends.base import BackendOptions, ModelTarget, package_version, through_lm_eval
from harness.weights import ENSEMBLE_KEY, ENSEMBLE_PATHS, ensemble_members

if TYPE_CHECKING:
    from lm_eval.api.model import LM

KEY = ENSEMBLE_KEY  # the members' ids listed in config.json (harness.weights reads them)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "chat_template.jinja")


def ensemble_folder(members: list[tuple[Path, str]], out: Path) -> Path:
    """Write (or keep) the ensemble folder for (path, model id) members at `out`."""
    if len(members) < 1:
        raise HarnessError("an ensemble needs at least one member", "list the member models")
    first = Path(members[0][0])
    config = json.loads((first / "config.json").read_text())
    config[KEY] = {"members": [{"model_id": mid} for _, mid in members]}
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    paths = json.dumps([str(Path(p).resolve()) for p, _ in members], indent=2) + "\n"
    if all((out / n).is_file() and (out / n).read_text() == t for n, t in (("config.json", text), (ENSEMBLE_PATHS,
                                                                                                 paths))):
        return out
    with atomic_dir(out) as tmp:
        for name in TOKENIZER_FILES:
            if (first / name).is_file():
                shutil.copy2(first / name, tmp / name)
        (tmp / "config.json").write_text(text)
        (tmp / ENSEMBLE_PATHS).write_text(paths)
        (tmp / "README.md").write_text("# ensemble\n\n" + "\n".join(f"- {p} ({m[:12]})" for p, m in members) + "\n")
    return out


def members_of(folder: Path) -> list[tuple[Path, str]]:
    """(folder, model id) of each member."""
    members = ensemble_members(folder)
    if members is None:
        raise HarnessError(f"{folder} is not an ensemble folder (no {KEY} in config.json or no {ENSEMBLE_PATHS})",
                           "make one with harness.evaluate.backends.ensemble.ensemble_folder")
    return members


def checked_members(folder: Path) -> list[Path]:
    """The members' folders, each still holding the model whose id the ensemble folder recorded (that id is part
    of the folder's identity, so of every run id and request cache key of the ensemble)."""
    from harness.identity import model_id

    members = members_of(folder)  # refuses a folder that is no ensemble
    for path, made in members:
        now = model_id(path) if (path / "config.json").is_file() else "missing"
        if now != made:
            raise HarnessError(f"ensemble member {path} changed since the ensemble was made (model id "
                               f"{made[:12]}, now {now[:12]})",
                               "make the ensemble folder again from its members (ensemble_folder)")
    return [p for p, _ in members]


def make_lm(folder: Path, options: BackendOptions) -> LM:
    import torch
    from lm_eval.api.model import TemplateLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    class EnsembleLM(TemplateLM):
        backend = "causal"

        def __init__(self) -> None:
            super().__init__()
            self.dev = torch.device(options.device or ("cuda" if torch.cuda.is_available() else "cpu"))
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            paths = checked_members(folder)
            for p in paths:
                if AutoTokenizer.from_pretrained(p).get_vocab() != self.tokenizer.get_vocab():
                    raise HarnessError(f"ensemble member {p} has another tokenizer", "ensemble models that share "
                                       "one tokenizer (fine-tunes of one base)")
            dtype = torch.float32 if options.dtype in ("auto", "float32") else getattr(torch, options.dtype)
            self.models = [AutoModelForCausalLM.from_pretrained(p, dtype=dtype).to(self.dev).eval()
                           for p in paths]
            self.add_bos_token = bool(options.add_bos_token)
            self.recent: dict[tuple[int, ...], torch.Tensor] = {}
            self.max_length = options.max_length or min(m.config.max_position_embeddings for m in self.models)
            self.batch = options.batch_size if isinstance(options.batch_size, int) else 16

        @property
        def eot_token_id(self) -> int:
            return self.tokenizer.eos_token_id

        @property
        def prefix_token_id(self) -> int:
            tok = self.tokenizer
            return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

        def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kw: Any) -> list[int]:
            special = self.add_bos_token if add_special_tokens is None else add_special_tokens
            return self.tokenizer.encode(string, add_special_tokens=special)

        def mean_logprobs(self, tokens: list[int]) -> torch.Tensor:
            """[len(tokens), vocab]: mean over members of log p(next token | tokens[:i+1]). The last few are
            remembered: a multiple-choice item's one-token options and its generation share one context."""
            key = tuple(tokens)
            if key not in self.recent:
                with torch.no_grad():
                    x = torch.tensor([tokens], device=self.dev)
                    logp = torch.stack([m(x).logits[0].float().log_softmax(-1) for m in self.models]).mean(0)
                if len(self.recent) >= 64:
                    self.recent.pop(next(iter(self.recent)))
                self.recent[key] = logp
            return self.recent[key]

        def _loglikelihood_tokens(self, requests: list, disable_tqdm: bool = False, **kw: Any) -> list:
            wholes = [(context + continuation)[-(self.max_length + 1):] for _key, context, continuation in requests]
            order = sorted(range(len(requests)), key=lambda i: -len(wholes[i]))
            out: list[tuple[float, bool] | None] = [None] * len(requests)
            for start in range(0, len(order), self.batch):
                chunk = order[start:start + self.batch]
                conts = [requests[i][2] for i in chunk]
                for i, logp in zip(chunk, self.batch_logprobs([wholes[i][:-1] for i in chunk], conts), strict=True):
                    target = torch.tensor(requests[i][2], device=logp.device)
                    out[i] = (float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all()))
            return out

        def batch_logprobs(self, inputs: list[list[int]], conts: list[list[int]]) -> list[torch.Tensor]:
            """Per row, [len(cont), vocab]: the members' mean log-probs at the positions that predict its
            continuation. Rows are left-padded so every continuation ends at the last position; only the last
            max(len(cont)) positions go through the heads."""
            width, keep = max(map(len, inputs)), max(map(len, conts))
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eot_token_id
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in inputs], device=self.dev)
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in inputs], device=self.dev)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            total = None
            with torch.no_grad():
                for m in self.models:
                    logits = m(input_ids=ids, attention_mask=mask, position_ids=positions,
                               logits_to_keep=keep).logits[:, -keep:]
                    logp = logits.float().log_softmax(-1)
                    total = logp if total is None else total + logp
            mean = total / len(self.models)
            return [mean[r, keep - len(c):] for r, c in enumerate(conts)]

        def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
            from lm_eval import utils

            out = []
            for (string,) in [r.args for r in requests]:
                windows = map(utils.make_disjoint_window, utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1))
                out.append(sum(ll for ll, _ in self._loglikelihood_tokens([(None, c, t) for c, t in windows])))
            return out

        def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
            out = []
            for context, kwargs in [r.args for r in requests]:
                until = kwargs.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                tokens, new = self.tok_encode(context), []
                for _ in range(int(kwargs.get("max_gen_toks", 256))):
                    nxt = int(self.mean_logprobs(tokens[-self.max_length:])[-1].argmax())
                    if nxt == self.eot_token_id:
                        break
                    tokens.append(nxt)
                    new.append(nxt)
                    if any(u in self.tokenizer.decode(new) for u in until):
                        break
                text = self.tokenizer.decode(new)
                for u in until:
                    text = text.split(u)[0]
                out.append(text)
            return out

    return EnsembleLM()


class EnsembleBackend:
    name = "ensemble"

    def version(self) -> str:
        return through_lm_eval(f"ensemble (mean log-probs), transformers {package_version('transformers')}")

    def build(self, target: ModelTarget, options: BackendOptions) -> LM:
        if target.path is None:
            raise HarnessError(f"the ensemble backend needs an ensemble folder, got {target.name!r}",
                               "make one with ensemble_folder (harness dtm writes one)")
        return make_lm(target.path, options)


BACKEND = EnsembleBackend()
