"""The study's full model table (``studies/paper-models.toml``) runs end to end on the bundled data.

The test reads the bundled study file itself (its ``models``, labels, the three prompt variants of each LLM,
its checkpoint placeholders and its datasets), drops the models the registry says cannot run here, and stands a
seeded random instance of the real architecture (real depth, tiny width), saved as its own loader reads it, in
for every checkpoint the file names: interatomic potentials, PET-MAD, ESM3 and ESM-IF1 built in their model
environments (one process per environment, ``paper_table_random.py``), the ``transformers`` protein, chemical
and general language models here (``tests/models/hf_tiny.py``; MoLFormer's folder with its own modelling code,
``tests/models/molformer_tiny.py``). Models that share a placeholder (an LLM's three
prompt variants) share the instance. The study then runs every stage (extract, energies, measure, every
registered analysis, report) on the bundled molecules, crystals and proteins at a small n.
"""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from matteralign import datasets, envs, models
from matteralign.study import Study

pytestmark = [pytest.mark.models, pytest.mark.slow]

pytest.importorskip("transformers")
pytest.importorskip("gemmi")

HERE = Path(__file__).resolve().parent
#: Samples per dataset of the file and the neighbour count of every k-NN measure. Six protein chains (of the
#: 27): the three Orb models are random instances at the real size (their loaders build the released
#: architecture), which take 10-58 s per chain of 1.1k-4.1k atoms on one core.
N = {"molecules": 24, "crystals": 24, "proteins": 6}
K = 5
#: Embedding batch size (see _study_data).
BATCH = 4
#: A pair measure without k, added to the file's (see _study_data).
FREE = "unbiased_cka"


def _paper_file() -> Path:
    return Path(str(resources.files("matteralign").joinpath("studies", "paper-models.toml")))


def _hf_instance(model: str, folder: Path) -> Path:
    """A seeded random ``transformers`` instance of ``model``'s architecture at the registered depth."""
    from ..models import hf_tiny

    spec = models.get_spec(model)
    adapter = spec.factory.rpartition(":")[2] if isinstance(spec.factory, str) else ""
    depth = spec.kwargs.get("expected_layers")
    if adapter == "Esm2Extractor":
        return hf_tiny.esm2(folder, layers=depth, hidden=16)
    if adapter == "EsmcExtractor":
        return hf_tiny.esmc(folder, layers=depth, hidden=16)
    if adapter == "ProstT5Extractor":
        return hf_tiny.prostt5(folder, layers=depth, hidden=16)
    if adapter == "ChemBertaExtractor":
        return hf_tiny.roberta(folder, layers=depth, hidden=16)
    if adapter == "MolFormerExtractor":  # the folder carries its own modelling code (trust_checkpoint)
        from ..models import molformer_tiny

        return molformer_tiny.molformer(folder, layers=depth, hidden=16)
    if adapter == "ChemGPTExtractor":
        return hf_tiny.gpt_neo(folder, layers=depth, hidden=16)
    if adapter == "CausalLMExtractor":
        return hf_tiny.causal_lm(folder, spec.kwargs["model_type"], layers=depth, hidden=16)
    raise AssertionError(f"no random instance builder for model {model!r} (adapter {spec.factory!r})")


def _env_instances(env: str, names: list[str], root: Path, proteins) -> dict[str, str]:
    """Random instances of ``names`` (all of environment ``env``), built in one process of that environment."""
    from matteralign.datasets.protein import backbone

    envs.create(env)
    inp = root / f"{env}-input.json"
    small = sorted(proteins, key=lambda s: len(s.sequence))[:2]
    inp.write_text(json.dumps({"models": names, "sequences": [s.sequence for s in small],
                               "backbones": [backbone(s.atoms)[:, :3].tolist() for s in small]}))
    proc = envs.run_in_env(env, [HERE / "paper_table_random.py", root / env, inp])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _with_k(params: dict) -> dict:
    return {**params, "k": min(int(params["k"]), K)} if "k" in params else dict(params)


def _study_data(paper: Study, run: list[str], checkpoints: dict[str, str], out: Path) -> dict:
    """The paper study's settings with the runnable models, the random instances and the small n and k."""
    from matteralign.analysis import ANALYSES, analysis_options
    from matteralign.analysis import _load_all as load_analyses

    data = paper.config.model_dump(exclude_none=True)
    load_analyses()
    data.update(
        out=str(out), models=run, checkpoints=checkpoints,
        datasets=[{**d, "n": N[d["name"]]} for d in data["datasets"]],
        # the file's metrics at the small k, and one without k: CKNNA values on fewer than 10 k samples are left
        # out of the condensed (family) matrices by design, so at this n only a k-free measure fills them
        metrics={**{name: _with_k(p) for name, p in data["metrics"].items()}, FREE: {}},
        model_metrics={name: [_with_k(p) for p in ps] for name, ps in data["model_metrics"].items()},
        # every registered analysis, at the small k
        analyses={a: ({"k": K} if "k" in (analysis_options(a) or ()) else {}) for a in ANALYSES},
        # a real-size Orb architecture holds several GB per batch of 16 protein chains (1.1k-4.1k atoms each)
        batch_size=BATCH,
    )
    return data


def test_paper_model_table_runs_end_to_end_on_random_instances(tmp_path):
    from matteralign.execute import placement

    paper = Study.from_toml(_paper_file())
    table = paper.config.models
    placeholders = dict(paper.config.checkpoints)
    assert placeholders and all(not Path(p).exists() for p in placeholders.values())

    # -- what cannot run here, from the registry: the study's own check once every environment is built
    for env in sorted({models.get_spec(m).env for m in table if models.get_spec(m).env}):
        envs.create(env)
    problems = paper.problems()
    cannot = {p["model"]: p["reason"] for p in problems if p["what"] == "model"}
    assert {p["model"] for p in problems if p["what"] == "checkpoint"} == set(placeholders)  # every placeholder
    for m, reason in cannot.items():  # the model's own check (no adapter here), never an env or a checkpoint
        check = models.get_spec(m).check
        assert check is not None and check() == reason, (m, reason)
        assert m not in placeholders
    assert cannot, "the table lists models that cannot run here; the registry should say so"
    run = [m for m in table if m not in cannot]

    # -- a random instance per checkpoint placeholder (an LLM's three prompt variants share one)
    ck = tmp_path / "ckpt"
    proteins = datasets.load("proteins")
    by_env: dict[str, list[str]] = defaultdict(list)
    built: dict[str, str] = {}
    for m in run:
        if m not in placeholders:
            assert not models.get_spec(m).requires_checkpoint, m
            continue
        env = placement.env_of(m)
        if env:
            by_env[env].append(m)
        elif placeholders[m] not in built:
            built[placeholders[m]] = str(_hf_instance(m, ck / m.replace("@", "_")))
    checkpoints = {m: built[placeholders[m]] for m in run if m in placeholders and not placement.env_of(m)}
    for env, names in sorted(by_env.items()):
        checkpoints.update(_env_instances(env, names, ck, proteins))
    assert set(checkpoints) == {m for m in run if m in placeholders}

    # -- the file's study with the instances in place of its placeholders, at a small n
    data = _study_data(paper, run, checkpoints, tmp_path / "out")
    assert data["trust_checkpoint"] is True
    assert {d["name"] for d in data["datasets"]} == set(N)  # the file's datasets, proteins included
    study_file = tmp_path / "paper-models.toml"
    study_file.write_text(Study.from_dict(data).to_toml())
    study = Study.from_toml(study_file)
    assert study.problems() == []
    study.validate()
    res = study.run(progress=False)

    check_results(res, study, run, checkpoints)


def check_results(res, study: Study, run: list[str], checkpoints: dict[str, str]) -> None:
    """The assertions on a finished run of the table (embeddings, missing numbers, pairs, report, provenance)."""
    import pandas as pd

    from matteralign.analysis._plot import FAMILY_COLORS
    from matteralign.store import Store
    from matteralign.study_runner import CORE_COVERAGE

    cfg = study.config
    store = Store(Path(cfg.store) if cfg.store else res.out / "store")
    # -- every runnable model has embeddings for every dataset whose views it reads, and none for the others
    loaded = {d.name: datasets.load(d.name).subsample(d.n, seed=cfg.seed) for d in cfg.datasets}
    protein_sets = {name for name, ds in loaded.items() if all(s.has("sequence") and s.has("atoms") for s in ds)}
    assert protein_sets == {"proteins"}
    from matteralign.study_runner import _not_read

    not_read = _not_read(cfg, loaded)
    assert 'id="not-read"' in res.report.read_text()
    on: dict[str, set[str]] = defaultdict(set)
    embedded: dict[tuple[str, str], set[str]] = {}
    for m in run:
        spec = models.get_spec(m)
        for name, ds in loaded.items():
            if not any(spec.reads_sample(s) for s in ds):
                # not run on a dataset it reads no sample of (a structure model of proteins on molecules), and
                # the report's provenance says why
                assert not store.has(name, m, spec.default_layer), (m, name)
                rows = res.pairs.query("dataset == @name")
                assert m not in {*rows["model_a"], *rows["model_b"]}, (m, name)
                assert f"{name}/{m}" in not_read, (m, name)
                continue
            assert store.has(name, m, spec.default_layer), (m, name)
            ids, X = store.read(name, m, spec.default_layer)
            skipped = store.skipped(name, m, spec.default_layer)
            assert sorted([*ids, *skipped]) == sorted(ds.ids), (m, name)
            # a sample the model cannot read (an element a potential does not know) is skipped with the reason
            assert ids and all(r.strip() for r in skipped.values()), (m, name, dict(list(skipped.items())[:3]))
            assert np.isfinite(X).all() and X.std(axis=0).max() > 0, (m, name)
            on[name].add(m)
            embedded[(name, m)] = set(ids)
    assert set().union(*on.values()) == set(run)  # every runnable model of the table ran somewhere
    assert on["proteins"] >= {m for m in run if models.get_spec(m).family in ("protein_lm", "inverse_folding")}

    # no number is missing: the structure models of proteins ran on the proteins only
    assert not res.missing, res.summary()
    assert {k for k in not_read if k.endswith(("/esm-if1", "/proteinmpnn"))} == {
        f"{name}/{m}" for m in ("esm-if1", "proteinmpnn") for name in loaded if name not in protein_sets}
    assert not res.failed_analyses, res.failed_analyses

    # -- a finite value for every pair of models sharing a dataset, on the samples both embedded (the models
    # that embed nearly all samples are compared on the samples they all embedded, as the measure stage does)
    for name, members in on.items():
        most = max(len(embedded[(name, m)]) for m in members)
        core = [m for m in members if len(embedded[(name, m)]) >= CORE_COVERAGE * most]
        common = set.intersection(*(embedded[(name, m)] for m in core))
        assert len(common) >= N[name] - 2, (name, len(common))
        rows = res.pairs.query("dataset == @name")
        for metric in cfg.metrics:
            got = rows.query("metric == @metric")
            n_of = {tuple(sorted(p)): n for *p, n in zip(got["model_a"], got["model_b"], got["n"], strict=True)}
            for a in members:
                for b in members:
                    if a > b:
                        continue
                    shared = common if a in core and b in core else embedded[(name, a)] & embedded[(name, b)]
                    assert n_of.get((a, b)) == len(shared), (name, metric, a, b, n_of.get((a, b)), len(shared))
            assert np.isfinite(got["value"]).all(), (name, metric)

    # -- the report: the new families coloured by name, and in the condensed (family) matrices
    families = {models.get_spec(m).family for m in run if not models.get_spec(m).control}
    assert families >= {"protein_lm", "chemical_lm", "llm", "inverse_folding", "pet"}
    assert families <= set(FAMILY_COLORS), sorted(families - set(FAMILY_COLORS))
    tables = res.out / "results" / "analysis" / "matrix"
    condensed = {}
    for name, members in on.items():
        fams = {models.get_spec(m).family for m in members}
        for metric in cfg.metrics:
            C = pd.read_csv(tables / name / metric / "condensed.csv", index_col="family")
            assert set(C.index) == set(C.columns) == fams, (name, metric, sorted(fams ^ set(C.index)))
        C = pd.read_csv(tables / name / FREE / "condensed.csv", index_col="family").loc[sorted(fams), sorted(fams)]
        multi = [f for f in sorted(fams) if sum(models.get_spec(m).family == f for m in members) > 1]
        assert np.isfinite(C.to_numpy()[~np.eye(len(fams), dtype=bool)]).all(), name  # between families
        assert np.isfinite(np.diag(C.loc[multi, multi])).all(), name  # within a family of several models
        condensed[name] = fams
    assert {"protein_lm", "inverse_folding", "pet"} <= condensed["proteins"]
    assert {"chemical_lm", "llm", "pet"} <= condensed["molecules"]
    html = res.report.read_text()
    for m in run:
        assert m in html, m

    # -- provenance: the checkpoint of every model, by its contents, on every stored layer
    for name, members in on.items():
        for m in members:
            prov = store.provenance(name, m, models.get_spec(m).default_layer)
            if m in checkpoints:
                fp = prov["plan"]["model_options"]["checkpoint"]
                path = Path(checkpoints[m])
                if path.is_dir():
                    assert set(fp["files"]) == {str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()}
                else:
                    assert fp["size"] == path.stat().st_size, (m, name)
                weights = Path(prov["provenance"]["weights"]).resolve()  # the adapter's own record of its file
                assert weights == path.resolve() or path.resolve() in weights.parents, (m, name, str(weights))
            else:
                assert "checkpoint" not in prov["plan"]["model_options"], (m, name)
