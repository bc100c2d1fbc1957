"""Disperse-Then-Merge (Fu et al., ACL 2024) as one study: cluster the instruction data, fine-tune the base on each
cluster, merge the sub-models, and compare with the baselines on the study's suites.

    study = run_dtm("examples/dtm_zoo.yaml", resume=False)    # Study: table rows, the curve, wall-time split

Every stage is cached by content: the clusters by (base, data, K, seed), each fine-tune by (base, data slice,
parameters) in its own folder, each merge by its recipe (harness merge), each evaluation by its run id (harness
eval). A killed study re-run with `resume` skips every finished model and starts at the first unfinished one. A
study that finished returns its stored result at once. A sub-model whose loss is not finite stops the study before
any merge. Everything lands in the store: fine-tunes as models with a `finetuned_from` edge to the base (data slice
hash, cluster id and hyper-parameters in the edge), merges with their lineage.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.hashing import hash_json
from harness.paths import results_dir
from harness.train.instructions import Example, slice_hash
from harness.workflows.dtm_config import DtmConfig, load_config

if TYPE_CHECKING:
    from harness.store import Store
    from harness.train.finetune import FinetuneParams

FINISHED = "study.json"
MERGE_LABELS = {"linear": "average", "fisher": "Fisher", "ties": "TIES", "dare_ties": "DARE"}
STARTED = "started.json"


@dataclass
class Model:
    """A model the study made or uses: a row of the table, a member of a merge, or both."""

    label: str
    path: Path
    model_id: str
    backend: str = "hf"


@dataclass
class Study:
    folder: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]  # the recipes side by side (harness.analysis.study_table)
    curve: list[dict[str, Any]]  # vanilla fine-tuning on a fraction of the data
    seconds: dict[str, float]  # embedding, training, merging, evaluation, total
    trained: list[dict[str, Any]] = field(default_factory=list)  # per fine-tune: steps, tokens, seconds, cached
    table_version: int = 1  # harness.analysis.study_table.TABLE_VERSION of the rows (study.json before it: 1)
    clusters: dict[str, Any] = field(default_factory=dict)  # cluster_record: sizes per clustering, the control's draw
    cached: bool = False


def study_folder(cfg: DtmConfig) -> Path:
    return results_dir() / "dtm" / f"{cfg.name}-{hash_json(cfg.identity())[:10]}"


def _write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _base(cfg: DtmConfig, here: Path, store: Store, say: Callable[[str], None]) -> Model:
    from harness.evaluate.target import resolve_model

    ref = cfg.base
    if ref.startswith("zoo:"):
        from harness.paths import zoo_dir
        from harness.zoo.build import build_zoo
        from harness.zoo.family import FAMILY
        from harness.zoo.register import register_zoo

        name = ref.removeprefix("zoo:")
        say(f"base: {name} (built into {zoo_dir()} unless it is there)")
        if name != "zoo-base":
            raise HarnessError(f"base {ref!r}: only zoo:zoo-base is built by harness dtm",
                               "build the zoo (harness zoo build) and name the member's folder")
        built = build_zoo(zoo_dir(), threads=cfg.threads, members=tuple(m for m in FAMILY if m.name == name))
        register_zoo(built, store)
        ref = str(built[0].path)
    elif (here / ref).is_dir():
        ref = str((here / ref).resolve())
    target = resolve_model(ref, store)
    if target.path is None:
        raise HarnessError(f"base {cfg.base!r} has no local folder", "give a model folder")
    return Model("base", target.path, target.model_id)


def _data_path(cfg: DtmConfig, here: Path) -> Path:
    """data.path relative to the config's folder when a file is there, else as given."""
    p = Path(cfg.data.path or "")
    return p if p.is_absolute() or not (here / p).exists() else here / p


def _examples(cfg: DtmConfig, here: Path, folder: Path) -> list[Example]:
    from harness.train.instructions import read_instructions, write_instructions

    if cfg.data.zoo is not None:
        from harness.zoo.instructions import zoo_instructions

        examples = zoo_instructions(cfg.data.zoo.n, cfg.data.zoo.biased, cfg.seed)
    else:
        examples = read_instructions(_data_path(cfg, here))
    random.Random(cfg.seed).shuffle(examples)
    write_instructions(folder / "data.jsonl", examples)
    texts = folder / "texts.jsonl"  # Fisher estimation reads {"text": ...}
    if not texts.exists():  # written whole or not at all: a study killed here resumes with every text
        write_text_atomic(texts, "".join(json.dumps({"text": e.text}) + "\n" for e in examples))
    return examples


def _embedding_folder(cfg: DtmConfig, here: Path) -> Path:
    """A named embedding model: a folder (relative to the config's folder, or as given)."""
    for p in (here / cfg.embedding, Path(cfg.embedding)):
        if (p / "config.json").is_file():
            return p.resolve()
    raise HarnessError(f"embedding model {cfg.embedding!r} is no model folder (no config.json there)",
                       "download the sentence-embedding model to a folder and name it, or use embedding: base")


RANDOM_CONTROL = "a seeded random permutation of the examples cut at the k-means clusters' sizes"


def _clusters(cfg: DtmConfig, base: Model, examples: list[Example], folder: Path,
              here: Path) -> dict[str, list[int]]:
    """k-means labels on the embeddings and the random control of k-means' sizes, cached in clusters.json."""
    from harness.train.clusters import check_k, embed, kmeans_labels, random_labels, sizes

    check_k(cfg.k, len(examples))
    key = hash_json({"base": base.model_id, "data": slice_hash(examples), "k": cfg.k, "seed": cfg.seed,
                     "embedding": cfg.embedding, "random": 2})  # 2: the random split's own generator
    path = folder / "clusters.json"
    if path.exists() and (known := json.loads(path.read_text())).get("key") == key:
        return known["labels"]  # a study's cached split: from before "random_control", an even one
    model = base.path if cfg.embedding == "base" else _embedding_folder(cfg, here)
    kmeans = kmeans_labels(embed(model, [e.text for e in examples]), cfg.k, cfg.seed)
    labels = {"kmeans": kmeans, "random": random_labels(sizes(kmeans, cfg.k), cfg.seed)}
    _write_json(path, {"key": key, "labels": labels, "random_control": RANDOM_CONTROL,
                       "sizes": {kind: sizes(v, cfg.k) for kind, v in labels.items()}})
    return labels


def cluster_record(cfg: DtmConfig, labels: dict[str, list[int]], folder: Path) -> dict[str, Any]:
    """The study's record of its clusters: each clustering's sizes by cluster id and how the control was drawn."""
    from harness.train.clusters import sizes

    stored = json.loads((folder / "clusters.json").read_text()).get("random_control")
    return {"k": cfg.k, "seed": cfg.seed, "sizes": {kind: sizes(v, cfg.k) for kind, v in labels.items()},
            "random_control": stored or "an even random split (a study clustered before the control took "
                                        "k-means' sizes)"}


@dataclass(frozen=True)
class Job:
    name: str
    examples: list[Example]
    params: FinetuneParams
    meta: dict[str, Any]


def _jobs(cfg: DtmConfig, examples: list[Example], labels: dict[str, list[int]]) -> list[Job]:
    from harness.train.clusters import groups

    jobs = []
    for kind in ("kmeans", "random"):
        for c, idx in enumerate(groups(labels[kind], cfg.k)):
            prefix = "dtm" if kind == "kmeans" else "random"
            jobs.append(Job(f"{prefix}-c{c}", [examples[i] for i in idx], cfg.params(),
                            {"role": prefix, "cluster": c, "clustering": kind}))
    jobs.append(Job("vanilla", examples, cfg.params(), {"role": "vanilla"}))
    jobs.append(Job("vanilla-l2", examples, cfg.params(l2=cfg.l2), {"role": "vanilla+l2"}))
    for i, lr in enumerate(cfg.soup_lrs):
        jobs.append(Job(f"soup-{i}", examples, cfg.params(lr=lr, seed=cfg.seed + 100 + i), {"role": "soup"}))
    for f in cfg.curve:
        if f < 1.0:
            n = max(1, round(f * len(examples)))
            jobs.append(Job(f"curve-{round(100 * f)}", examples[:n], cfg.params(), {"role": "curve", "fraction": f}))
    return jobs


def _check_names(store: Store, study: str, base: Model, jobs: list[Job]) -> None:
    """Before any training: a store name `<study>-<model>` that another fine-tune holds (the same name and seed,
    another config: other data, parameters or base) would be refused only at registration, after every fine-tune."""
    with store.reading():
        for job in jobs:
            holder = store.name_holder(name := f"{study}-{job.name}")
            if holder is None:
                continue
            rec, parents = store.get_model(holder), store.parents(holder)
            same = (rec.kind == "finetune" and rec.meta.get("slice") == slice_hash(job.examples)
                    and rec.meta.get("params") == json.loads(json.dumps(job.params.identity()))
                    and [e.parent_id for e in parents] == [base.model_id])
            if not same:
                raise HarnessError(f"the store's model {name!r} ({holder[:12]}) is not this study's {job.name}: "
                                   "another config has this name and seed",
                                   "give the config another name: (a study's models are named "
                                   "<name>-s<seed>-<model>), or `harness models rename` the old model")


def _register(store: Store, study: str, base: Model, job: Job, path: Path, record: Any) -> Model:
    from harness.identity import model_id as model_hash
    from harness.store import LineageEdge, ModelRecord

    model_id = model_hash(path)
    meta = {"study": study, **job.meta, "slice": slice_hash(job.examples), "n_examples": len(job.examples),
            "params": job.params.identity(), "steps": record.steps, "tokens": record.tokens}
    arch = (json.loads((path / "config.json").read_text()).get("architectures") or [None])[0]
    store.add_model(ModelRecord(model_id, f"{study}-{job.name}", str(path.resolve()), "finetune",
                                source="harness dtm", architecture=arch, meta=meta))
    store.add_lineage([LineageEdge(model_id, base.model_id, "finetuned_from", params=meta)])
    return Model(job.name, path, model_id)


def _train(cfg: DtmConfig, base: Model, jobs: list[Job], folder: Path, store: Store, study: str,
           say: Callable[[str], None]) -> tuple[dict[str, Model], list[dict[str, Any]]]:
    """Every sub-model and baseline fine-tune: here one after another, or over Ray with train.workers > 1."""
    from harness.train.ray_training import TrainTask, train_all

    tasks = [TrainTask(base.path, base.model_id, job.examples, job.params, folder / "models" / job.name,
                       {"study": study, **job.meta}, cfg.threads) for job in jobs]
    count = [0]

    def done(i: int, task: TrainTask, res: Any) -> None:
        count[0] += 1
        say(f"[{count[0]}/{len(jobs)}] {jobs[i].name}: {len(task.examples)} examples, {res.steps} steps, "
            + ("cached" if res.cached else f"{res.seconds:.1f} s, {res.tokens_per_s:,.0f} tokens/s, "
               f"loss {res.last_loss:.3f}"))

    results = train_all(tasks, cfg.train.workers, cfg.train.ray_address, done)
    models, trained = {}, []
    for job, res in zip(jobs, results, strict=True):
        models[job.name] = _register(store, study, base, job, res.path, res)
        trained.append({"name": job.name, "steps": res.steps, "tokens": res.tokens, "seconds": round(res.seconds, 2),
                        "tokens_per_s": round(res.tokens_per_s, 1), "cached": res.cached,
                        "n_examples": len(job.examples), "last_loss": round(res.last_loss, 4)})
    return models, trained


def merge_recipe(method: str, members: list[Model], base: Model, name: str, cfg: DtmConfig,
                 texts: Path) -> dict[str, Any]:
    """A mergekit recipe (plus harness's `fisher:` and `name:`) for the uniform merge of `members`."""
    weight = {"weight": 1.0}
    recipe: dict[str, Any] = {"name": name, "merge_method": method, "dtype": "float32"}
    if method in ("ties", "dare_ties"):
        recipe["base_model"] = str(base.path)
        weight = {"weight": 1.0, "density": cfg.density}
    if method == "fisher":
        recipe["fisher"] = {"data": str(texts), "samples": 64, "max_length": 128}
    recipe["models"] = [{"model": str(m.path), "parameters": dict(weight)} for m in members]
    return recipe


def _merges(cfg: DtmConfig, base: Model, models: dict[str, Model], folder: Path, store: Store, study: str,
            say: Callable[[str], None]) -> list[Model]:
    from harness.merge import merge_to_folder

    k = cfg.k
    plan = [(f"DTM {MERGE_LABELS[m]}", m, [models[f"dtm-c{c}"] for c in range(k)]) for m in cfg.merges]
    plan += [("random clusters", "linear", [models[f"random-c{c}"] for c in range(k)]),
             ("uniform soup", "linear", [models[f"soup-{i}"] for i in range(len(cfg.soup_lrs))])]
    out = []
    for label, method, members in plan:
        name = f"{study}-{label.replace(' ', '-')}"
        res = merge_to_folder(merge_recipe(method, members, base, name, cfg, folder / "texts.jsonl"),
                              seed=cfg.seed, store=store)
        say(f"merge {label}: {'cached' if res.cached else f'{res.seconds:.1f} s'}")
        out.append(Model(label, res.path, res.model_id))
    return out


def _ensemble(cfg: DtmConfig, models: dict[str, Model], folder: Path) -> Model:
    from harness.evaluate.backends.ensemble import ensemble_folder
    from harness.identity import model_id as model_hash

    members = [models[f"dtm-c{c}"] for c in range(cfg.k)]
    path = ensemble_folder([(m.path, m.model_id) for m in members], folder / f"{cfg.name}-s{cfg.seed}-ensemble")
    return Model(f"ensemble of {cfg.k}", path, model_hash(path), backend="ensemble")


def _evaluate(cfg: DtmConfig, rows: list[Model], store: Store, say: Callable[[str], None]) -> dict[str, dict]:
    """{label: {suite: RunResult}} through harness eval."""
    from harness.evaluate.runner import evaluate_model

    out: dict[str, dict] = {}
    for m in rows:
        for suite in cfg.suites:
            name, _, split = suite.partition(":")
            t = time.perf_counter()
            res = evaluate_model(str(m.path), name, split=split or None, backend=m.backend, limit=cfg.limit,
                                 store=store, seed=cfg.seed)
            out.setdefault(m.label, {})[suite] = res
            say(f"eval {m.label} on {suite}: {'cached' if res.reused else f'{time.perf_counter() - t:.1f} s'}")
    return out


def _check_inputs(cfg: DtmConfig, here: Path) -> None:
    """Bad data, K or suites, and training data that holds an evaluated question, fail here, before the study
    folder is marked started or anything is trained."""
    from harness.evaluate.plan import make_plan
    from harness.train.clusters import check_k
    from harness.train.instructions import read_instructions
    from harness.train.overlap import check_disjoint

    for suite in cfg.suites:
        name, _, split = suite.partition(":")
        make_plan(name, split or None, cfg.limit, None, None, False)
    if cfg.embedding != "base":
        _embedding_folder(cfg, here)
    if cfg.data.zoo is not None:
        from harness.zoo.instructions import zoo_instructions

        examples, source = zoo_instructions(cfg.data.zoo.n, cfg.data.zoo.biased, cfg.seed), "the zoo's data"
    else:
        examples, source = read_instructions(_data_path(cfg, here)), str(_data_path(cfg, here))
    check_k(cfg.k, len(examples))
    check_disjoint(examples, cfg.suites, source)


def run_dtm(config: str | Path, resume: bool = False, seed: int | None = None, store: Store | None = None,
            say: Callable[[str], None] | None = None) -> Study:
    from harness.store import Store

    cfg, here = load_config(config)
    if seed is not None:
        cfg = cfg.model_copy(update={"seed": seed})
    folder = study_folder(cfg)
    if (folder / FINISHED).is_file():
        from harness.analysis.study_table import TABLE_VERSION

        done = json.loads((folder / FINISHED).read_text())
        if done.get("table_version", 1) == TABLE_VERSION:
            return Study(**{**done, "folder": folder, "cached": True})
        resume = True  # an older table: every model and run is cached, so only the table is made again
    _check_inputs(cfg, here)
    if (folder / STARTED).is_file() and not resume:
        raise HarnessError(f"study {folder.name} was started and did not finish ({folder})",
                           "pass --resume to continue from its first unfinished model")
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / STARTED, cfg.identity())
    store = store or Store()
    store.init()
    return _run(cfg, here, folder, store, say or (lambda s: None))


def _run(cfg: DtmConfig, here: Path, folder: Path, store: Store, say: Callable[[str], None]) -> Study:
    import torch

    from harness.analysis.study_table import TABLE_VERSION, curve_rows, table_rows

    torch.set_num_threads(cfg.threads)
    study = f"{cfg.name}-s{cfg.seed}"
    clock: dict[str, float] = {}
    start = time.perf_counter()
    base = _base(cfg, here, store, say)
    examples = _examples(cfg, here, folder)
    clock["base and data"] = time.perf_counter() - start
    t = time.perf_counter()
    labels = _clusters(cfg, base, examples, folder, here)
    clock["embedding"] = time.perf_counter() - t
    t = time.perf_counter()
    jobs = _jobs(cfg, examples, labels)
    _check_names(store, study, base, jobs)
    models, trained = _train(cfg, base, jobs, folder, store, study, say)
    clock["training"] = time.perf_counter() - t
    t = time.perf_counter()
    merged = _merges(cfg, base, models, folder, store, study, say)
    rows = [base, models["vanilla"], Model("vanilla+L2", models["vanilla-l2"].path, models["vanilla-l2"].model_id),
            *merged[-1:], merged[-2], *merged[:-2]]
    if cfg.ensemble:
        rows.append(_ensemble(cfg, models, folder))
    clock["merging"] = time.perf_counter() - t
    t = time.perf_counter()
    curve = [Model(f"vanilla {round(100 * f)}%", models["vanilla" if f == 1.0 else f"curve-{round(100 * f)}"].path,
                   "") for f in cfg.curve]
    runs = _evaluate(cfg, rows + [c for c in curve if c.path != models["vanilla"].path], store, say)
    runs.update({c.label: runs["vanilla"] for c in curve if c.path == models["vanilla"].path})
    clock["evaluation"] = time.perf_counter() - t
    clock["total"] = time.perf_counter() - start
    table = table_rows(runs, [m.label for m in rows], store)
    curve_table = curve_rows(runs, cfg.curve, store)
    for r in [*table, *curve_table]:
        first = next(iter(runs[r["row"]].values()))
        r["model_id"], r["model"] = first.model_id, first.model_name
    result = Study(folder, cfg.model_dump(mode="json"), table, curve_table,
                   {k: round(v, 2) for k, v in clock.items()}, trained, TABLE_VERSION,
                   cluster_record(cfg, labels, folder))
    data = asdict(result)
    data.pop("folder")
    data.pop("cached")
    _write_json(folder / FINISHED, data)
    return result
