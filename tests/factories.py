"""Builders of tiny real models for tests (random weights, a real tokenizer, standard HF folders)."""

from __future__ import annotations

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
