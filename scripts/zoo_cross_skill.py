"""Print the zoo's cross-skill margin as docs/zoo.md reports it (harness/zoo/crossskill.py: the merge's weights
chosen on zoo_math_L:search, compared with zoo-math and zoo-lang on zoo_math_L:heldout, paired).

    python scripts/zoo_cross_skill.py --zoo DIR [--threads 1]

The merges go to a temporary folder, never into the zoo.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from harness.zoo.crossskill import cross_skill


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: on a shared machine more is slower)")
    args = ap.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(args.threads)
    hf_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        res = cross_skill(args.zoo, Path(tmp))
    print(f"chosen (w_math, w_lang) = {res.chosen}")
    for name, forms in res.heldout.items():
        print(f"{name:9s} zoo_math_L:heldout  gen {forms['gen']:5.1f}  mc {forms['mc']:5.1f}")
    for source, forms in res.diff.items():
        print(f"merge - {source:9s} " + "  ".join(f"{f} {d:+.1f} +- {se:.1f}" for f, (d, se) in forms.items()))


if __name__ == "__main__":
    main()
