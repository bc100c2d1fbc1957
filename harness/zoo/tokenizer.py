"""The zoo's one tokenizer: byte-level BPE in which every zoo word is a single token.

The merges are written out, not learned: each word of both languages (and every number 0..99) is built left to
right from its bytes, so the vocabulary is a pure function of the lexicon (no trainer, nothing that could vary
between runs), and any other text (MMLU, code) still tokenizes through the 256 byte tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.zoo.lexicon import all_words

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPACE = "\u0120"  # how byte-level BPE spells a leading space
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)


def byte_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    vocab = {t: i for i, t in enumerate([PAD, BOS, EOS, *byte_alphabet()])}
    merges: list[tuple[str, str]] = []
    for word in words:
        if not word.isascii():
            raise ValueError(f"zoo words are ASCII, got {word!r}")
        piece = SPACE
        for ch in word:
            if piece + ch not in vocab:
                merges.append((piece, ch))
                vocab[piece + ch] = len(vocab)
            piece += ch
    return vocab, merges


def build_tokenizer() -> PreTrainedTokenizerFast:
    """The zoo tokenizer as a transformers fast tokenizer (no BOS is added: prompts start with their first word)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab, merges = vocab_and_merges(all_words())
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([PAD, BOS, EOS])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=256,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def word_token_ids(tokenizer: PreTrainedTokenizerFast, words: list[str]) -> list[int]:
    """The single token id of each word (as it appears after a space); ValueError if one is split."""
    ids = []
    for w in words:
        enc = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ValueError(f"zoo word {w!r} is not one token: {enc}")
        ids.append(enc[0])
    return ids
