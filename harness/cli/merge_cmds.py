"""`harness merge RECIPE.yaml` and `harness fisher MODEL --data FILE`: thin shells over harness.merge."""

from __future__ import annotations

import typer

from harness.cli.answers import print_answer


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
    app.command("fisher")(fisher)


def merge(
    recipe: str = typer.Argument(..., help="mergekit recipe YAML (models by path, store name/id, or recipe file)."),
    out: str = typer.Option(None, "--out", help="Output folder. Default: results/merges/<id>/."),
    device: str = typer.Option("cpu", "--device", help="Where the arithmetic runs: cpu or cuda."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**32 - 1,
                              help="Seed for random methods (DARE masks); part of the model id."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept pickle (.bin) checkpoints."),
    name: str = typer.Option(None, "--name", help="Name in the store (default: the recipe's name: or file stem)."),
    selected_on: str = typer.Option(None, "--selected-on", help="Record that this recipe was chosen on SUITE[:SPLIT]."),
    as_json: bool = typer.Option(False, "--json", help="Print the model id, path and parents as JSON."),
) -> None:
    """Merge models with a mergekit recipe; the same recipe again returns the stored model at once."""
    from harness.errors import HarnessError
    from harness.merge import merge_to_folder
    from harness.store import Store

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise HarnessError(f"unknown --device {device!r}", "use cpu or cuda")
    if name is not None:
        from harness.names import check_name

        check_name(name)
    store = Store()
    result = merge_to_folder(recipe, out, seed=seed, device=device, allow_pickle=allow_pickle, store=store,
                             name=name)
    if selected_on:
        from harness.merge.record import record_selection

        record_selection(store, result.model_id, selected_on, note=f"harness merge {recipe}")
    answer = result.as_json()
    print_answer(answer, "cached" if result.cached else f"merged in {result.seconds:.1f}s", as_json)
    if result.self_contained and name is None:  # the next `harness merge` of it is answered without the store
        from harness.cli.answers import remember_merge

        with store.reading():  # no writer between this check and the store fingerprint the answer is kept with
            if store.find_model(result.model_id) is not None:
                remember_merge(recipe, out, seed, answer, {p.path: p.files_sig for p in result.parents})


def fisher(
    model: str = typer.Argument(..., help="Model folder."),
    data: str = typer.Option(..., "--data", help="Texts: .txt (one per line) or .jsonl (field text)."),
    out: str = typer.Option(..., "--out", help="Output .safetensors file."),
    samples: int = typer.Option(64, "--samples", min=1, help="How many texts to use."),
    max_length: int = typer.Option(256, "--max-length", min=1, help="Tokens per text."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Estimate a model's diagonal Fisher on a text sample, for `merge_method: fisher` recipes."""
    from harness.merge.fisher import estimate_fisher, load_texts

    path = estimate_fisher(model, load_texts(data, samples), out, max_length=max_length, device=device)
    typer.echo(str(path))
