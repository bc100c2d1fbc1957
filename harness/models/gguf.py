"""A GGUF file as a model: checked from its metadata, dequantised once by transformers into a float32
safetensors folder with its tokenizer and chat template, cached under results/cache/gguf/<sha256 of the file>.

The folder is what the hf and vLLM backends, mergekit and the store see; the GGUF file is recorded as its source.
Bad input (a truncated file, an architecture transformers cannot dequantise, no tokenizer) is refused before
anything is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.hashing import hash_json, sha256_file
from harness.paths import cache_dir

SOURCE_FILE = "gguf_source.json"  # written into the converted folder: which file, which bytes, which converter


@dataclass(frozen=True)
class GgufInfo:
    path: Path
    sha256: str
    architecture: str  # as the GGUF names it (llama, qwen2, ...)
    config: dict[str, Any]
    has_chat_template: bool


def is_gguf(path: Path) -> bool:
    return path.suffix.lower() == ".gguf"


def gguf_cache_dir() -> Path:
    return cache_dir() / "gguf"


def file_sha256(path: Path, remember: bool = False) -> str:
    """The file's sha256, remembered per (path, size, mtime) once the file converted, so it hashes once."""
    from harness.evaluate.target import memo

    st = path.stat()
    key = hash_json([str(path.resolve()), st.st_size, st.st_mtime_ns])
    digest = memo("gguf_hashes").get(key)
    if digest is None:
        digest = sha256_file(path).hexdigest()
    if remember:
        memo("gguf_hashes", key, digest)
    return digest


def read_info(path: Path) -> GgufInfo:
    """The GGUF's metadata, or a one-line HarnessError naming what is wrong with the file."""
    if not path.is_file():
        raise HarnessError(f"no GGUF file at {path}", "check the path")
    arch = _architecture(path)
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES, load_gguf_checkpoint

    try:
        parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as exc:
        if "not supported" in str(exc):
            raise HarnessError(
                f"{path.name}: transformers cannot dequantise GGUF architecture {arch!r} "
                f"(it reads {', '.join(sorted(set(GGUF_SUPPORTED_ARCHITECTURES) - {'general', 'tokenizer'}))})",
                "convert the original checkpoint to safetensors and pass that folder instead",
            ) from exc
        raise HarnessError(f"{path.name} is not a readable GGUF file ({exc})", "download it again") from exc
    tokenizer = parsed.get("tokenizer") or {}
    if not tokenizer.get("tokens"):
        raise HarnessError(f"{path.name} carries no tokenizer (no tokenizer.ggml.tokens)",
                           "use a GGUF exported with its tokenizer, or the original safetensors folder")
    template = (parsed.get("tokenizer_config") or {}).get("chat_template")
    return GgufInfo(path=path.resolve(), sha256=file_sha256(path), architecture=arch, config=parsed["config"],
                    has_chat_template=bool(template))


GGUF_MAGIC = b"GGUF"  # every GGUF file's first 4 bytes


def _architecture(path: Path) -> str:
    """general.architecture, read with the gguf package; a truncated or foreign file fails here."""
    with path.open("rb") as f:
        if f.read(len(GGUF_MAGIC)) != GGUF_MAGIC:  # another format (safetensors, a pickle) named .gguf
            raise HarnessError(f"{path.name} is not a GGUF file (it does not start with the GGUF magic)",
                               "pass a real GGUF file; a safetensors model needs no conversion: pass its folder "
                               "(e.g. harness eval FOLDER)")
    try:
        from gguf import GGUFReader
    except ImportError as exc:
        raise HarnessError("reading GGUF files needs the gguf package", "pip install gguf") from exc
    try:
        reader = GGUFReader(str(path))
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
        for t in reader.tensors:  # a truncated file lists tensors its bytes no longer hold
            end = int(t.data_offset) + int(t.n_bytes)
            if end > path.stat().st_size:
                raise ValueError(f"tensor {t.name} ends at byte {end}, past the end of the file")
    except (ValueError, KeyError, IndexError, OSError, EOFError) as exc:
        raise HarnessError(f"{path.name} is not a complete GGUF file ({str(exc).splitlines()[0][:120]})",
                           "download it again (it may be truncated)") from exc
    return arch


# Bumped when the conversion writes different bytes for the same GGUF (2: the tokenizer's model_max_length is the
# model's context, not transformers' 1e30 "unknown"), so an older conversion is never reused under the new rules.
CONVERTER_VERSION = 2


def converted_folder(info: GgufInfo) -> Path:
    return _cache_folder(info.sha256)


def _cache_folder(sha256: str) -> Path:
    return gguf_cache_dir() / f"{sha256[:24]}-v{CONVERTER_VERSION}"


def ensure_folder(path: Path) -> tuple[Path, GgufInfo]:
    """The cached safetensors folder for this GGUF, converting it on first use (atomically)."""
    from harness.merge.engine import staging

    if path.is_file():
        final = _cache_folder(file_sha256(path))
        if (final / SOURCE_FILE).is_file():  # converted before: the file's bytes are what was checked then
            known = json.loads((final / SOURCE_FILE).read_text())
            return final, GgufInfo(path.resolve(), known["gguf_sha256"], known["gguf_architecture"], {},
                                   bool(known.get("chat_template")))
    info = read_info(path)
    final = converted_folder(info)
    with staging(final) as tmp:
        convert(info, tmp)
    file_sha256(path, remember=True)
    return final, info


def convert(info: GgufInfo, out: Path) -> None:
    """Dequantise into a fresh float32 model of the same config (save_pretrained refuses the GGUF-loaded
    object itself) and save it with the tokenizer and chat template the GGUF carries."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(info.path.parent), info.path.name
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise HarnessError(f"{info.path.name}: dequantised weights do not fit {type(fresh).__name__} "
                           f"(missing {missing[:3]}, unexpected {unexpected[:3]})",
                           "convert the original checkpoint to safetensors instead")
    fresh.save_pretrained(out, safe_serialization=True)
    context = getattr(config, "max_position_embeddings", None)
    if context and not tok.model_max_length < 1e9:  # transformers' VERY_LARGE_INTEGER stands for "not set"
        tok.model_max_length = int(context)
    save_tokenizer(tok, out)
    (out / SOURCE_FILE).write_text(json.dumps({
        "gguf_file": info.path.name, "gguf_sha256": info.sha256, "gguf_architecture": info.architecture,
        "transformers": transformers.__version__, "dtype": "float32",
        "chat_template": info.has_chat_template,
    }, indent=1))


# Keys transformers writes into tokenizer_config.json from how the tokenizer was loaded, not what it is
# (local_files_only follows HF_HUB_OFFLINE): left in, the same bytes would get two model ids.
_LOAD_STATE_KEYS = ("local_files_only", "is_local", "name_or_path", "_commit_hash")


def save_tokenizer(tok: Any, out: Path) -> None:
    """save_pretrained, then drop the load-state keys so the folder's content hash depends on the tokenizer only."""
    tok.save_pretrained(out)
    path = out / "tokenizer_config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        path.write_text(json.dumps({k: v for k, v in config.items() if k not in _LOAD_STATE_KEYS}, indent=2) + "\n")
