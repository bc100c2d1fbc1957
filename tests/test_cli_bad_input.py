"""Bad input through the real entry point (`harness.cli.main`): one line naming the problem and the fix, a non-zero
exit, nothing half written. Found by the CLI audit (branch auditcli)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests import test_merge as shared
from tests.factories import run_cli

zoo = shared.zoo


def test_eval_of_models_that_all_fail_exits_non_zero(results, store, tmp_path: Path) -> None:
    # typer (0.29) returns a command's typer.Exit(n) from app(standalone_mode=False) instead of raising it: main()
    # dropped it and exited 0 (`harness eval A B` with every model failing, `harness check` with a failing gate)
    code, out, err = run_cli("eval", str(tmp_path / "nope1"), str(tmp_path / "nope2"), "--suite", "zoo_math")
    assert code == 2, (code, err)
    lines = err.strip().splitlines()
    assert sum(line.startswith("error: ") and "no model folder" in line for line in lines) == 2, err
    assert lines[-1].startswith("2 of 2 models failed: ") and "Traceback" not in err


def test_a_typo_in_a_recipe_key_is_refused_not_ignored(zoo, results, store, tmp_path: Path) -> None:
    # mergekit's config ignores keys it does not know: `densty: 0.2` merged with ties' default density 1.0, and a
    # typo'd `tokenizer_sorce:` merged with the default tokenizer, both exit 0 with a new model id in the store
    base, m1, m2 = (str(zoo[k]) for k in ("m0", "m1", "m2"))
    ties = {"merge_method": "ties", "base_model": base, "dtype": "float32",
            "models": [{"model": m1, "parameters": {"weight": 1.0, "densty": 0.2}},
                       {"model": m2, "parameters": {"weight": 1.0, "density": 0.7}}]}
    top = {**ties, "models": [{"model": m1, "parameters": {"weight": 1.0}}], "tokenizer_sorce": "base"}
    entry = {**ties, "models": [{"model": m1, "parameters": {"weight": 1.0}, "paramters": {"density": 0.5}}]}
    for recipe, want in ((ties, "'densty' (did you mean 'density'?)"),
                         (top, "'tokenizer_sorce' (did you mean 'tokenizer_source'?)"),
                         (entry, "'paramters' (did you mean 'parameters'?)")):
        code, out, err = run_cli("merge", str(shared.write_recipe(tmp_path, "typo", recipe)))
        assert code == 2 and want in err and err.count("\n") == 1, (code, out, err)
    assert not (results / "merges").exists() or not any((results / "merges").iterdir())
    assert store.list_models(kind="merge") == []


def test_an_out_folder_that_cannot_be_made_is_one_line(zoo, results, store, tmp_path: Path) -> None:
    # before: `error: FileExistsError: [Errno 17] ...` / `NotADirectoryError: [Errno 20] ...`, exit 1, no fix
    recipe = shared.write_recipe(tmp_path, "lin", shared.recipes(zoo)["linear"])
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    for out, want in ((a_file, "is a file"), (a_file / "m", "cannot write")):
        code, stdout, err = run_cli("merge", str(recipe), "--out", str(out))
        assert code == 2 and want in err and err.count("\n") == 1 and "Traceback" not in err, (out, code, err)
    assert a_file.read_text() == "not a folder" and store.list_models(kind="merge") == []


def test_evolve_bounds_must_be_finite(zoo, results, tmp_path: Path) -> None:
    # before: `low: -.inf` passed the config check and CMA-ES stopped with
    # "error: AssertionError: Abs of all elements of mean vector must be less than 1e+32", exit 1
    for bounds in ("{low: -.inf, high: 1.0, init: 0.5}", "{low: 0.0, high: .inf, init: 0.5}",
                   "{low: .nan, high: 1.0}"):
        cfg = tmp_path / "ev.yaml"
        cfg.write_text(f"name: ev\nbase: {zoo['m0']}\nsources: [{zoo['m1']}, {zoo['m2']}]\nmethod: linear\n"
                       f"parameters:\n  weight: {bounds}\nfitness:\n  - suite: zoo_math\nsearch_split: public\n"
                       "heldout_split: heldout\nbudget: {generations: 1}\n")
        code, out, err = run_cli("evolve", str(cfg))
        assert code == 2 and "parameters.weight" in err and "finite" in err and err.count("\n") == 1, (bounds, err)
    if (results / "harness.duckdb").exists():  # no evolve run was started (a failed one was, before)
        import duckdb

        with duckdb.connect(str(results / "harness.duckdb"), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM evolve_runs").fetchone() == (0,)


def test_fisher_of_a_missing_model_folder_is_one_line(results, tmp_path: Path) -> None:
    # before: transformers took the path for a hub repo id: "error: OSError: Repo id must be in the form ...", exit 1
    data = tmp_path / "texts.txt"
    data.write_text("one text\nanother text\n")
    out = tmp_path / "f.safetensors"
    code, stdout, err = run_cli("fisher", str(tmp_path / "nomodel"), "--data", str(data), "--out", str(out))
    assert code == 2 and "no model folder at" in err and err.count("\n") == 1, (code, err)
    assert not out.exists()


def test_leaderboard_of_an_unknown_suite_is_refused(store) -> None:
    # before: `harness leaderboard --suite zoo_mat` (a typo) printed "no complete runs yet for suite 'zoo_mat'", exit 0
    for args in (("--suite", "zoo_mat"), ("--suite", "zoo_mat", "--json"), ("--methods", "--suite", "zoo_mat")):
        code, out, err = run_cli("leaderboard", *args)
        assert code == 2 and "unknown suite 'zoo_mat' (did you mean 'zoo_math'?)" in err, (args, code, out, err)
        assert err.count("\n") == 1 and out == "", (args, out, err)
    code, out, err = run_cli("leaderboard", "--suite", "zoo_math")  # a known suite without runs: as before
    assert code == 0 and out == "no complete runs yet for suite 'zoo_math'\n", (code, out, err)


def test_an_openai_eval_without_an_endpoint_writes_no_run(zoo, results, store) -> None:
    # before: the "needs an endpoint" check ran in the backend's build, after the run had started: exit 2 but a
    # `failed` runs row (and the model registered) for what is bad input; so did --serve on another backend
    import duckdb

    for args, want in ((("--backend", "openai"), "the openai backend needs an endpoint: pass --base-url URL"),
                       (("--serve",), "--serve works with --backend openai only")):
        code, out, err = run_cli("eval", str(zoo["m0"]), "--suite", "zoo_math", "--limit", "2", *args)
        assert code == 2 and want in err and err.count("\n") == 1, (args, code, out, err)
    with duckdb.connect(str(store.path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        assert con.execute("SELECT count(*) FROM models").fetchone() == (0,)


def test_a_weight_that_is_not_a_number_names_its_parameter_and_model(zoo, results, store, tmp_path: Path) -> None:
    # before: "error: mergekit failed: 1 validation error for float: fix the recipe or its models" (exit 2), from
    # inside mergekit's run, naming neither the parameter nor the model
    m1, m2 = str(zoo["m1"]), str(zoo["m2"])
    lin = {"merge_method": "linear", "dtype": "float32",
           "models": [{"model": m1, "parameters": {"weight": 1.0}}, {"model": m2, "parameters": {"weight": "abc"}}]}
    cond = {**lin, "models": [lin["models"][0], {"model": m2, "parameters": {"weight": [{"filter": "mlp", "value": 1.0},
                                                                                        {"value": [0.5, "x"]}]}}]}
    for recipe, bad in ((lin, "'abc'"), (cond, "'x'")):
        code, out, err = run_cli("merge", str(shared.write_recipe(tmp_path, "strw", recipe)))
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (code, out, err)
        assert f"models[1] ({m2})" in err and f"'weight' is {bad}, not a float" in err, err
    assert store.list_models(kind="merge") == []
    ok = {**lin, "models": [lin["models"][0], {"model": m2, "parameters": {"weight": "1e-1"}}]}  # mergekit parses it
    code, out, err = run_cli("merge", str(shared.write_recipe(tmp_path, "sci", ok)))
    assert code == 0 and "merged in" in out, err


def test_a_merge_prints_no_torch_dtype_notice(zoo, results, tmp_path: Path) -> None:
    # before: every merge wrote "[transformers] `torch_dtype` is deprecated! Use `dtype` instead!" to stderr (mergekit
    # sets config.torch_dtype on the merged model's config), so an error after it came out as two lines; so did the
    # search loops' in-memory merge. transformers' logger writes to the real stderr: a subprocess sees it.
    recipe = shared.write_recipe(tmp_path, "lin", {**shared.recipes(zoo)["linear"], "dtype": "float32"})
    merge = subprocess.run([sys.executable, "-m", "harness.cli", "merge", str(recipe)], capture_output=True,
                           text=True, timeout=300)
    assert merge.returncode == 0 and "merged in" in merge.stdout and merge.stderr == "", merge.stderr
    code = ("import sys\nfrom harness.merge import InMemoryMerger\n"
            "print(len(InMemoryMerger(seed=0).merge(sys.argv[1])))\n")
    memory = subprocess.run([sys.executable, "-c", code, str(recipe)], capture_output=True, text=True, timeout=300)
    assert memory.returncode == 0 and int(memory.stdout) > 0 and "torch_dtype" not in memory.stderr, memory.stderr


def test_importing_a_file_that_is_no_gguf_says_so(zoo, results, store, tmp_path: Path) -> None:
    # before: a safetensors file renamed .gguf was "not a complete GGUF file (GGUF magic invalid): download it again
    # (it may be truncated)", and a .safetensors file was told to "pass ... a model folder", which import refuses
    import shutil

    renamed = shutil.copy(zoo["m0"] / "model.safetensors", tmp_path / "m0.gguf")
    code, out, err = run_cli("models", "import", str(renamed))
    assert code == 2 and err.count("\n") == 1 and "download" not in err, (code, err)
    assert "m0.gguf is not a GGUF file (it does not start with the GGUF magic)" in err, err
    assert "pass a real GGUF file" in err and "pass its folder" in err, err
    code, out, err = run_cli("models", "import", str(zoo["m0"] / "model.safetensors"))
    assert code == 2 and err.count("\n") == 1 and "a model folder or" not in err, (code, err)
    assert "model.safetensors is not a .gguf file" in err and "harness eval" in err, err
    assert not (results / "cache" / "gguf").exists() and store.list_models() == []


def test_a_model_that_fails_before_its_run_is_one_line(zoo, results, store, tmp_path: Path) -> None:
    # before: `[1/1] nw: zoo_math (hf)`, a blank line (the request bars' empty table), then the error: three lines
    # for a folder without weights or a file that is no GGUF. The real stderr, so a subprocess.
    import shutil

    nw = tmp_path / "nw"
    nw.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(zoo["m0"] / name, nw / name)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    base = [sys.executable, "-m", "harness.cli", "eval", "--suite", "zoo_math", "--limit", "2", "--device", "cpu"]
    for model, want in ((nw, "has no weights"), (bad, "is not a GGUF file")):
        proc = subprocess.run([*base, str(model)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and want in proc.stderr, proc.stderr
    # several models: the failing one is its error line alone, the next still runs with its progress line
    proc = subprocess.run([*base, str(nw), str(zoo["m0"])], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "zoo_math_mc_public" in proc.stdout, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"error: {nw}: ") and "has no weights" in lines[0], proc.stderr
    assert lines[1] == "[2/2] m0: zoo_math (hf)" and "[1/2]" not in proc.stderr.split("[2/2]")[0], lines
    again = subprocess.run([*base, str(zoo["m0"])], capture_output=True, text=True, timeout=300)  # reused: no bar
    assert again.returncode == 0 and again.stderr.startswith("[1/1] m0: zoo_math (hf)\n"), again.stderr
    assert "reused" in again.stderr.splitlines()[1] and again.stderr.count("\n") == 2, again.stderr
