"""The folder path: recipe -> mergekit's run_merge into a staging folder -> checks -> atomic move -> store.

    result = merge_to_folder("recipe.yaml", seed=0)   # MergeResult

A merge that is already in the store (same id) returns at once. On any failure the staging folder is removed
and nothing is written to the store.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.identity import files_signature
from harness.merge.checks import check_inputs, check_recipe
from harness.merge.recipe import Recipe, load_recipe
from harness.merge.resolve import MergePlan, Parent, Resolver, draws, plan_merge
from harness.merge.stream import SHARD_BYTES
from harness.paths import results_dir

if TYPE_CHECKING:
    from harness.store import ModelRecord, Store


@dataclass(frozen=True)
class MergeResult:
    model_id: str
    path: Path
    parents: tuple[Parent, ...]
    recipe_id: str
    cached: bool
    seconds: float
    self_contained: bool = False  # depends only on the recipe's text, the parents' folders and the store

    def as_json(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "path": str(self.path), "recipe_id": self.recipe_id,
                "cached": self.cached, "seconds": round(self.seconds, 3),
                "parents": [{"model_id": p.model_id, "name": p.name, "path": p.path, "role": p.role,
                             "weight": p.weight} for p in self.parents]}


def merges_dir() -> Path:
    return results_dir() / "merges"


def merge_to_folder(
    recipe: str | Path | dict | Recipe, out: str | Path | None = None, *, seed: int | None = 0,
    device: str = "cpu", allow_pickle: bool = False, store: Store | None = None, name: str | None = None,
    shard_bytes: int = SHARD_BYTES, _stack: tuple[Path, ...] = (),
) -> MergeResult:
    """Merge a recipe into a HF folder (default results/merges/<id>/) and record it in the store under `name`
    (default: the recipe's `name:`, else its file's stem). A name another model holds is refused before any work.
    The weights are written in shards of at most `shard_bytes` (a tensor larger than that gets a shard of its own)."""
    from harness.store import Store

    t0 = time.perf_counter()
    store = store or Store()
    if not store.path.exists():
        store.init()  # an existing store is checked (and migrated if older) by its first read
    rec = load_recipe(recipe)
    asked_name = name
    stack = _stack + ((rec.path,) if rec.path else ())

    def materialize(sub: Path) -> tuple[str, str]:
        r = merge_to_folder(sub, seed=seed, device=device, allow_pickle=allow_pickle, store=store, _stack=stack)
        return str(r.path), r.model_id

    plan = plan_merge(rec, Resolver(store=store, materialize=materialize, stack=stack), seed=seed, device=device)
    check_recipe(plan)  # on a cache hit too: a merge stored before a check existed is refused as a new one is
    with store.reading():  # one connection for the name and the cache look-up
        name = _free(store, name or default_name(rec, seed), plan.model_id)
        stored = store.find_model(plan.model_id)
    final = Path(out).resolve() if out else merges_dir() / plan.model_id
    if final.exists() and not final.is_dir():
        raise HarnessError(f"the merge's output {final} is a file", "pass --out a folder (new or empty)")
    seen = FolderMerge.read(final, plan.model_id)  # its harness_merge.json, read once for the whole check
    hit = cached_folder(store, plan, final, name, stored, seen)
    if hit is not None:
        if asked_name is not None and stored is not None and stored.name != asked_name:
            store.rename(plan.model_id, asked_name)  # the name the user asked for now (free: checked above)
        return MergeResult(plan.model_id, hit, plan.parents, plan.recipe_id, True, time.perf_counter() - t0,
                           self_contained(plan))
    check_inputs(plan, allow_pickle)
    damaged = final.exists() and any(final.iterdir())  # a folder of this merge, damaged: made again, swapped in
    if damaged and seen.named != plan.model_id:
        raise HarnessError(f"{final} already exists and is not this merge", "pick another --out or remove it")
    with staging(final, replace=lambda f: damaged and not seen.whole) as tmp:
        run_mergekit(plan, tmp, device=device, allow_pickle=allow_pickle, shard_bytes=shard_bytes,
                     where=f"merge of {rec.path or 'recipe'}")
        from harness.merge.cards import write_card
        from harness.merge.checks import check_output_tokenizer

        check_output_tokenizer(plan, tmp)

        write_card(tmp, plan, name)
    from harness.merge.record import record_merge

    record_merge(store, plan, final, name)
    return MergeResult(plan.model_id, final, plan.parents, plan.recipe_id, False, time.perf_counter() - t0,
                       self_contained(plan))


def self_contained(plan: MergePlan) -> bool:
    """True when the merge depends on nothing but its recipe's text, its parents' folders and the store: no
    recipe file (a merge of merges) or GGUF file among its references, no file named in its parameters."""
    import json

    from harness.merge.recipe import is_recipe_file

    if plan.recipe.extras.get("fisher") or "file:" in json.dumps(plan.normalised):
        return False
    return all(not p.ref.lower().endswith(".gguf") and is_recipe_file(p.ref, plan.recipe.base_dir) is None
               for p in plan.parents)


def default_name(rec: Recipe, seed: int | None) -> str | None:
    """The store name of a merge not named by the caller: the recipe's `name:`, else its file's stem, and for a
    recipe that draws random numbers with another seed than 0 that stem with `-seed<N>` (the seeds' merges are
    different models: `harness merge dare.yaml --seed 1` after the seed-0 merge was refused as "name taken")."""
    if rec.name is None or rec.extras.get("name") or not seed or not draws(rec.data):
        return rec.name
    return f"{rec.name}-seed{seed}"


def _free(store: Store, name: str | None, model_id: str) -> str | None:
    from harness.store.models import name_taken

    if name is None:
        return None
    holder = store.name_holder(name)
    if holder not in (None, model_id):
        raise name_taken(name, holder)
    return name


def cached_folder(store: Store, plan: MergePlan, final: Path, name: str | None = None,
                  rec: ModelRecord | None = None, seen: FolderMerge | None = None) -> Path | None:
    """The stored folder of this merge if it is intact (copied to `final` if asked elsewhere), else None. `rec`:
    the store's row for the merge when the caller has read it already; `seen`: what `final` holds, likewise."""
    rec = rec or store.find_model(plan.model_id)
    seen = seen or FolderMerge.read(final, plan.model_id)
    if rec is None and seen.whole:  # made before, store row lost: register again
        from harness.merge.record import record_merge

        record_merge(store, plan, final, name)
        return final
    if rec is None or not rec.path or not Path(rec.path).is_dir():
        return None
    stored = Path(rec.path)
    if rec.meta.get("files_sig") and files_signature(stored) != rec.meta["files_sig"]:
        return None
    if final == stored or final == merges_dir() / plan.model_id:
        return stored
    if seen.whole:
        return final
    if final.exists() and any(final.iterdir()) and seen.named != plan.model_id:
        raise HarnessError(f"{final} already exists and is not this merge", "pick another --out or remove it")
    with staging(final, replace=lambda f: not seen.whole) as tmp:  # a damaged copy: replaced
        shutil.copytree(stored, tmp, dirs_exist_ok=True)
    return final


def merge_record(folder: Path) -> dict[str, Any]:
    """The folder's harness_merge.json ({} when it has none or it does not parse)."""
    import json

    try:
        record = json.loads((folder / "harness_merge.json").read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


@dataclass(frozen=True)
class FolderMerge:
    """What a folder's harness_merge.json says of it, read once per cache check: `named`, the merge id it names
    (whole or damaged); `whole`, the folder is merge `model_id` whole: the record names that id and the sizes of
    the files that define the model are the ones recorded when it was made (a cut shard, a lost or added weights
    file: not whole; a record without sizes, written before they were recorded, cannot tell: not whole, made
    again)."""

    named: str | None
    whole: bool

    @classmethod
    def read(cls, folder: Path, model_id: str) -> FolderMerge:
        from harness.identity import files_sizes

        record = merge_record(folder)
        named = record.get("model_id")
        return cls(named, named == model_id and record.get("files") == files_sizes(folder))


@contextmanager
def staging(final: Path, replace: Callable[[Path], bool] = lambda _: False) -> Iterator[Path]:
    """A fresh folder beside `final`, renamed to `final` if the body succeeds, removed if it fails. The folder is
    locked (flock on it) while the merge runs, so staging folders a killed merge left behind are told from live
    ones and removed (`clean_stale_staging`) before a new one starts. A non-empty `final` is kept (another process
    made the same content-addressed folder first) unless `replace(final)` says it is damaged: then it is swapped
    out (`final` never missing for more than two renames) and removed."""
    import fcntl

    tmp = final.parent / f".{final.name}{STAGING}{uuid.uuid4().hex[:8]}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(final.parent)
        tmp.mkdir()
    except OSError as exc:  # a read-only folder, a file on the way
        raise disk_error(exc, final) from exc
    held = os.open(tmp, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        yield tmp
        if final.exists() and any(final.iterdir()):
            if replace(final):
                swap_in(tmp, final)
                return
            shutil.rmtree(tmp)  # another process finished the same content-addressed merge first
            return
        if final.exists():
            final.rmdir()  # an empty folder the user made for --out
        tmp.rename(final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(exc, final) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        os.close(held)  # releases the lock


def swap_in(tmp: Path, final: Path) -> None:
    """Replace the folder `final` with `tmp`: the old one is moved aside under a staging name (removed by
    `clean_stale_staging` if this process dies before removing it)."""
    old = final.parent / f".{final.name}{STAGING}old-{uuid.uuid4().hex[:8]}"
    final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


STAGING = ".tmp-"
STALE_AFTER_S = 60.0  # younger folders are left alone: their merge may be between mkdir and flock


def clean_stale_staging(folder: Path) -> list[Path]:
    """Remove the staging folders in `folder` whose merge is gone (nobody holds their lock); returns them."""
    import fcntl

    removed = []
    for tmp in folder.glob(f".*{STAGING}*"):
        try:
            if not tmp.is_dir() or time.time() - tmp.stat().st_mtime < STALE_AFTER_S:
                continue
            fd = os.open(tmp, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live merge
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def disk_error(exc: BaseException, final: Path) -> HarnessError:
    if isinstance(exc, HarnessError):
        return exc
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) or "No space left" in text or "too large" in text:
        return HarnessError(f"disk full while writing {final} ({text.splitlines()[0][:120]})",
                            "free space or pass --out on a bigger disk; nothing was kept")
    return HarnessError(f"cannot write {final} ({text.splitlines()[0][:160]})", "check the folder's permissions")


def run_mergekit(plan: MergePlan, out: Path, *, device: str, allow_pickle: bool,
                 shard_bytes: int = SHARD_BYTES, where: str = "merge") -> None:
    """mergekit's own run_merge into `out`, seeded exactly as `mergekit-yaml --random-seed` seeds it, in bounded
    memory (harness/merge/stream.py: inputs read a tensor at a time, output in shards of SHARD_BYTES), every
    output tensor checked for NaN/inf as it is written (HarnessError naming `where`)."""
    from mergekit.merge import run_merge

    from harness.merge.rng import seeded
    from harness.merge.stream import bounded_loaders, finite_writer, reused_memory

    options = merge_options(plan.seed, device, allow_pickle).model_copy(update={"out_shard_size": shard_bytes})
    config = plan.config()
    try:
        with seeded(plan.seed), bounded_loaders(config, options), finite_writer(where), reused_memory(), \
                no_torch_dtype_notice():
            run_merge(config, str(out), options=options)
    except (HarnessError, KeyboardInterrupt):
        raise
    except OSError as exc:
        raise disk_error(exc, out) from exc
    except Exception as exc:
        if "No space left" in str(exc) or "too large" in str(exc):
            raise disk_error(exc, out) from exc
        raise mergekit_error(exc) from exc


@contextmanager
def no_torch_dtype_notice() -> Iterator[None]:
    """mergekit 0.1.5 sets `torch_dtype` on the merged model's config (merge._model_out_config), and transformers
    answers with "`torch_dtype` is deprecated! Use `dtype` instead!" on stderr every merge: that one message of that
    one logger is dropped while mergekit runs; every other transformers message still shows."""
    import logging

    logger = logging.getLogger("transformers.configuration_utils")

    def keep(record: logging.LogRecord) -> bool:
        return "`torch_dtype` is deprecated" not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def merge_options(seed: int | None, device: str, allow_pickle: bool) -> Any:
    from mergekit.options import MergeOptions

    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise HarnessError("--device cuda but no CUDA GPU is visible", "use --device cpu")
    return MergeOptions(
        device=device, random_seed=seed, trust_remote_code=False, copy_tokenizer=True, write_model_card=False,
        quiet=True, safe_serialization=True, lazy_unpickle=False, allow_crimes=False,
    )


def mergekit_error(exc: BaseException) -> HarnessError:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    fix = "fix the recipe or its models"
    if "size mismatch" in text.lower() or "vocabulary" in text.lower():
        fix = "merge models of the same shape, or set mergekit's tokenizer option (tokenizer: {source: union})"
    elif "required but not present" in text:  # mergekit's definition of the architecture lists a tensor not saved
        fix = ("mergekit cannot merge these checkpoints as saved: its definition of the architecture needs that "
               "tensor, which recent transformers leave out when saving (a tied lm_head.weight, GPT-NeoX's "
               "attention.bias buffers); merge checkpoints that hold it (docs/merge.md, Architectures)")
    return HarnessError(f"mergekit failed: {text}", fix)
