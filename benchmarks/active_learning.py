"""Active learning on real Galaxy Zoo 2 votes and on the simulator: which strategy needs the fewest labels?

    python -m benchmarks active_learning [--loops gz2,sim] [--seeds 0,1,2] [--gz2 DIR] [--pool N] [--test N]
        [--start 100] [--acquire 100] [--rounds 6] [--heads 4] [--samples 5] [--epochs 30] [--arch resnet18]
        [--size 64] [--plots docs]

Two closed loops, run the same way (``--loops``):

- ``gz2``, real votes (``--gz2``; ``--tiny`` uses a stand-in). The pool is the train split
  galaxies whose Kaggle labels hold every question (4,584): asking for one reveals its real
  votes, the Kaggle fractions read as the counts of 40 volunteers (``galaxymorph.data.kaggle_gz2``).
  The fixed test set is the test split (998), scored by the Kaggle RMSE and by the MAE of the
  vote fractions against the volunteers'. The encoder comes from an earlier campaign that asked
  fewer questions: the other galaxies outside the test split (4,146; 3,555 of them were only ever
  labelled so), with their votes on the questions every galaxy has (1, 2, 6, 7 and 8) alone.
- ``sim``, the simulator (gz_decals_dr5): ``--pretrain`` simulated galaxies with their votes
  train the encoder; asking for a pool galaxy draws fresh votes of about 40 simulated
  volunteers; the test set is scored by the MAE against the simulator's true probabilities.

Each round starts from the pretrained encoder, frozen, as survey teams work now: ``--heads``
Dirichlet heads for the tree are fine-tuned on the labelled galaxies
(``galaxymorph.training.finetune_run.fit``, each head its own seed, up to ``--epochs`` with
early stopping on a fifth of them, so the budget grows with the labelled set) and predict the
pool and the test set as one ensemble (``--samples`` MC-dropout passes each; the shared
encoder runs once). Each strategy then asks for ``--acquire`` more galaxies (random, bald,
cluster-bald over k-means clusters of the encoder's features, batch-bald over the heads:
``galaxymorph.acquisition``). The strategies of a seed share its starting set and first round.

Measured in every round: the test error, and which galaxies were chosen; in every round of
random (the first of which is every strategy's), the spread and the calibration on the test
votes of four kinds of uncertainty (one head's dropout, the heads without dropout, the heads
with dropout, and dropout through the encoder's last stage). The arms are the strategies of
each loop; the tables give their learning curves, how many labels each needs to reach
random's final error, the uncertainties, and how representative the chosen galaxies are. Every
finished round is kept in the work folder's results.json, so a re-run with the same settings
resumes (a seed from an earlier run is borrowed, not side by side). ``--plots`` gets the
learning curves and the chosen galaxies beside the pool (the user guide's: ``--plots docs``).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks._harness import Result, output_folder  # noqa: E402
from benchmarks._shared import SPLIT_SEED, TINY_ARCH, add_gz2_option, gz2_catalogue  # noqa: E402
from galaxymorph.acquisition import STRATEGIES, acquisition_scores, choose  # noqa: E402
from galaxymorph.data.catalogue import resolve_paths  # noqa: E402
from galaxymorph.data.inputs import Records  # noqa: E402
from galaxymorph.data.labelled import LabelledImages, decode_images, split_train_val  # noqa: E402
from galaxymorph.data.shards import assign_splits, write_shards  # noqa: E402
from galaxymorph.data.transforms import Preprocessing  # noqa: E402
from galaxymorph.engine import RunSettings  # noqa: E402
from galaxymorph.evaluation import TRUTH_PREFIX, evaluate_arrays  # noqa: E402
from galaxymorph.kaggle import kaggle_columns  # noqa: E402
from galaxymorph.models import Ensemble, load_encoder  # noqa: E402
from galaxymorph.models.head import keyed_dropout  # noqa: E402
from galaxymorph.prediction import predict_records, read_concentrations, read_predictions  # noqa: E402
from galaxymorph.representations import embed, read_embeddings  # noqa: E402
from galaxymorph.schema import Schema, get_schema  # noqa: E402
from galaxymorph.simulate import simulate_catalogue, simulate_votes  # noqa: E402
from galaxymorph.simulate.volunteers import volunteer_counts  # noqa: E402
from galaxymorph.stats import expected_fractions  # noqa: E402
from galaxymorph.training import FinetuneConfig, TrainConfig, train  # noqa: E402
from galaxymorph.training.finetune_run import build_model, fit  # noqa: E402

ARMS = ("random", *(s for s in STRATEGIES if s != "random"))
SOURCES = ("one head, dropout", "heads, no dropout", "heads x dropout", "encoder dropout, one head")
VOLUNTEERS = 40
COLOURS = ("tab:grey", "tab:red", "tab:blue", "tab:green")  # one per strategy, in ARMS order
TINY = dict(seeds="0", pretrain=40, pool=24, test=12, start=8, acquire=4, rounds=1, heads=2, samples=2, epochs=2,
            pretrain_epochs=1, arch=TINY_ARCH, sim_px=24, stored=24, size=16, batch_size=8, pretrain_batch_size=8,
            pca=4, workers=0, threads=1)


# ------------------------------------------------------------------------------------------- the two loops
@dataclass
class Loop:
    """One closed loop: the encoder every round starts from, the pool and how asking labels it, the scored test set."""

    name: str
    schema: Schema
    encoder: Path  # a pretrained run folder
    pool: pd.DataFrame  # id_str, file_loc
    test: pd.DataFrame
    test_votes: np.ndarray  # (test, answers) counts, NaN where a question was not provided
    ask: Callable[[np.ndarray, np.random.Generator], np.ndarray]  # pool rows -> their votes now (rows, answers)
    score: Callable[[np.ndarray], dict[str, float]]  # test concentrations -> metrics; the first is the goal's
    morphology: tuple[str, np.ndarray]  # a pool quantity to compare the chosen galaxies' distribution with


def pretrain_encoder(frame: pd.DataFrame, schema: Schema, prep: Preprocessing, folder: Path,
                     args: argparse.Namespace) -> Path:
    """The encoder every round starts from: a model trained (once, then reused) on galaxies outside pool and test."""
    if (folder / "encoder.done").is_file():
        return folder / "run"
    write_shards(frame, schema, folder / "shards", prep, val_fraction=0.2, test_fraction=0.0, seed=0,
                 workers=args.workers, progress=False)
    train(TrainConfig(shards=str(folder / "shards"), out=str(folder / "run"), arch=args.arch,
                      epochs=args.pretrain_epochs, patience=args.pretrain_epochs, batch_size=args.pretrain_batch_size,
                      lr=args.pretrain_lr, threads=args.threads, workers=args.workers, progress=False, seed=0))
    (folder / "encoder.done").touch()
    return folder / "run"


def simulator_loop(args: argparse.Namespace) -> Loop:
    schema = get_schema("gz_decals_dr5")
    sizes = np.cumsum([args.pretrain or 2000, args.pool or 3000, args.test or 500])
    sim = args.work / f"sim_{sizes[-1]}_{args.sim_px}px"
    catalogue = simulate_catalogue(int(sizes[-1]), args.sim_px, sim, seed=1234, workers=max(args.workers, 1),
                                   progress=False)
    catalogue["file_loc"] = [str(sim / f) for f in catalogue["file_loc"]]
    pretrain, pool, test = (catalogue.iloc[a:b].reset_index(drop=True) for a, b in zip([0, *sizes[:-1]], sizes))
    prep = Preprocessing(stored_size=args.sim_px, image_size=args.size, channels=3)
    encoder = pretrain_encoder(pretrain, schema, prep, args.work / "sim" / "encoder", args)
    truth = [TRUTH_PREFIX + a for a in schema.answers]
    test_votes = test[list(schema.answers)].to_numpy(np.float64)

    def ask(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        probabilities = pool[truth].to_numpy()[rows]
        return simulate_votes(probabilities, volunteer_counts(len(rows), VOLUNTEERS, rng), schema, rng).astype(float)

    def score(conc: np.ndarray) -> dict[str, float]:
        result = evaluate_arrays(conc, test_votes, schema, truth=test[truth].to_numpy())["overall"]
        return {"mae_truth": result["truth"]["model"]["mae"], "mae_votes": result["model"]["mae"]}

    smooth = pool[TRUTH_PREFIX + schema.answers[0]].to_numpy()
    return Loop("sim", schema, encoder, pool, test, test_votes, ask, score, ("true P(smooth)", smooth))


def gz2_loop(args: argparse.Namespace) -> Loop:
    schema = get_schema("gz2")
    path = gz2_catalogue(args)  # vote counts of 40 volunteers and the kaggle: fractions, shared with other benchmarks
    catalogue = pd.read_parquet(path)
    catalogue["file_loc"] = resolve_paths(catalogue["file_loc"].astype(str), path.parent)
    answers, kaggle = list(schema.answers), [f"kaggle:{c}" for c in kaggle_columns(schema)]
    split = assign_splits(catalogue["id_str"], SPLIT_SEED, 0.1, 0.1)
    every_question = catalogue[answers].notna().all(axis=1).to_numpy()
    fixed = np.random.default_rng(0)  # the same subsets for every seed and strategy
    pool = _subset(catalogue[(split == "train") & every_question], args.pool, fixed)
    test = _subset(catalogue[split == "test"], args.test, fixed)
    # the earlier campaign: everyone else outside the test split, with the votes of the questions all galaxies have
    later = [a for s in schema.slices if catalogue[answers[s]].isna().any(axis=None) for a in answers[s]]
    earlier = catalogue[(split != "test") & ~catalogue["id_str"].isin(pool["id_str"])]
    pretrain = _subset(earlier.assign(**dict.fromkeys(later, np.nan)), args.pretrain, fixed)
    prep = Preprocessing(stored_size=args.stored, source_crop=0.65, image_size=args.size, channels=3)
    encoder = pretrain_encoder(pretrain, schema, prep, args.work / "gz2" / "encoder", args)
    test_votes = test[answers].to_numpy(np.float64)

    def ask(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return pool[answers].to_numpy(np.float64)[rows]

    def score(conc: np.ndarray) -> dict[str, float]:
        result = evaluate_arrays(conc, test_votes, schema, kaggle=test[kaggle].to_numpy())["overall"]
        return {"kaggle_rmse": result["kaggle_rmse"]["model"], "mae_votes": result["model"]["mae"]}

    return Loop("gz2", schema, encoder, pool, test, test_votes, ask, score,
                ("vote fraction smooth (Class1.1)", pool["kaggle:Class1.1"].to_numpy()))


def _subset(frame: pd.DataFrame, size: int | None, rng: np.random.Generator) -> pd.DataFrame:
    rows = np.sort(rng.choice(len(frame), size, replace=False)) if size and size < len(frame) else np.arange(len(frame))
    return frame.iloc[rows].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------ a round
class EncoderDropout(nn.Module):
    """MC samples from channel dropout at the input of the encoder's last stage, each galaxy's masks from its key.

    The predictor runs ``features`` once and ``sample`` for the samples; here ``features``
    passes the images through and ``sample`` runs the encoder with ``n`` keyed masks
    (:func:`galaxymorph.models.head.keyed_dropout` over channels) from its last stage on,
    then the head without dropout. The heads were not trained with this dropout.
    """

    def __init__(self, model: nn.Module, p: float) -> None:
        super().__init__()
        self.model, self.p = model, p
        self.stage = model.encoder.get_submodule(model.encoder.feature_info[-1]["module"])
        self.config = model.config

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def sample(self, images: torch.Tensor, n: int, keys: torch.Tensor | None = None) -> torch.Tensor:
        keys = torch.randint(0, 2**32, (len(images),)) if keys is None else keys

        def drop(module: nn.Module, inputs: tuple[torch.Tensor]) -> tuple[torch.Tensor]:
            (x,) = inputs
            masks = keyed_dropout(torch.ones(x.shape[:2], device=x.device), n, self.p, keys)  # (n x B, channels)
            return (x.repeat(n, 1, 1, 1) * masks[:, :, None, None].to(x.dtype),)

        handle = self.stage.register_forward_pre_hook(drop)
        try:
            features = self.model.features(images)
        finally:
            handle.remove()
        return self.model.sample(features, 1)[..., 0].unflatten(0, (n, len(images))).permute(1, 2, 0)


def fit_heads(loop: Loop, pretrained: nn.Module, images: torch.Tensor, votes: np.ndarray, ids: list[str],
              folder: Path, seed: int, args: argparse.Namespace) -> list[nn.Module]:
    """``--heads`` tree heads fine-tuned on the frozen encoder, each from its own seed (resumed when done)."""
    data = LabelledImages(ids, images, torch.from_numpy(votes.astype(np.float32)))
    train_set, val_set = split_train_val(data, 0.2, seed)
    heads = []
    for k in range(args.heads):
        config = FinetuneConfig(checkpoint=str(loop.encoder), catalogue="(in memory)", out=str(folder / f"head{k}"),
                                task="tree", schema=loop.schema.name, unfreeze=0, epochs=args.epochs, patience=5,
                                lr=args.lr, batch_size=args.batch_size, seed=1000 * seed + k, progress=False)
        L.seed_everything(config.seed, verbose=False)  # the new head's initial weights
        model = build_model(pretrained, config, None)
        fit(model, train_set, val_set, config)
        heads.append(model.eval())
    return heads


def predict_samples(model: nn.Module, ids: list[str], images: torch.Tensor, out: Path, samples: int) -> np.ndarray:
    """(galaxies, answers, samples) concentrations of ``ids`` in their order, through ``galaxymorph.prediction``."""
    pixels = images.permute(0, 2, 3, 1).numpy()
    predict_records(model, Records(listed=list(zip(ids, pixels))), out, samples=samples,
                    run=RunSettings(batch_size=256, progress=False))
    frame, schema, _ = read_predictions(out)
    order = pd.Series(np.arange(len(frame)), index=frame["id_str"]).loc[ids].to_numpy()
    return read_concentrations(frame, schema)[order]


def spread(conc: np.ndarray, schema: Schema) -> float:
    """How far the samples disagree: each answer's vote fraction's standard deviation across samples, averaged."""
    fractions = np.stack([expected_fractions(conc[..., s], schema) for s in range(conc.shape[2])])
    return float(fractions.std(axis=0).mean())


def uncertainty(loop: Loop, sources: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Each source's spread and its calibration on the test votes (coverage of the 50% and 90% intervals, NLL)."""
    out = {}
    for name, conc in sources.items():
        result = evaluate_arrays(conc, loop.test_votes, loop.schema)["overall"]
        out[name] = {"samples": conc.shape[2], "spread": spread(conc, loop.schema),
                     "coverage_50": result["coverage"]["0.5"], "coverage_90": result["coverage"]["0.9"],
                     "nll": result["nll_per_galaxy"], **loop.score(conc)}
    return out


def run_seed(loop: Loop, seed: int, images: torch.Tensor, test_images: torch.Tensor, embeddings: np.ndarray,
             args: argparse.Namespace, results: dict[str, Any], save: Callable[[], None]) -> None:
    """Every round of every strategy for one seed; each finished round is saved at once."""
    pretrained = load_encoder(loop.encoder)
    pool_ids, test_ids = loop.pool["id_str"].tolist(), loop.test["id_str"].tolist()
    rng = np.random.default_rng(seed)
    start = rng.choice(len(pool_ids), args.start, replace=False)
    first_votes = loop.ask(start, rng)
    for arm in ARMS:
        rows, votes = start, first_votes
        arm_rng = np.random.default_rng([seed, ARMS.index(arm)])
        chosen = results["chosen"].setdefault(f"seed{seed}/{arm}", [])
        for round_ in range(args.rounds + 1):
            key = f"seed{seed}/{arm}/{round_}"
            folder = args.work / loop.name / f"seed{seed}" / ("shared" if round_ == 0 else arm) / f"round{round_}"
            began = time.perf_counter()
            heads = fit_heads(loop, pretrained, images[rows], votes, [pool_ids[i] for i in rows], folder, seed, args)
            ensemble = Ensemble(heads)
            unlabelled = np.setdiff1d(np.arange(len(pool_ids)), rows)
            ids = [pool_ids[i] for i in unlabelled] + test_ids
            conc = predict_samples(ensemble, ids, torch.cat([images[unlabelled], test_images]),
                                   folder / "predictions.parquet", args.samples)
            pool_conc, test_conc = conc[: len(unlabelled)], conc[len(unlabelled):]
            scores = acquisition_scores(pool_conc, loop.schema, VOLUNTEERS, seed=seed)["score"].to_numpy()
            one_head = acquisition_scores(pool_conc[..., : args.samples], loop.schema, VOLUNTEERS, seed=seed)
            results["rounds"][key] = {"labelled": len(rows), **loop.score(test_conc), "pool_bald": float(scores.mean()),
                                      "pool_bald_one_head": float(one_head["score"].mean())}
            if arm == "random":  # the first arm, so its round 0 is every arm's
                alone = predict_samples(ensemble, test_ids, test_images, folder / "test_no_dropout.parquet", 1)
                deep = predict_samples(EncoderDropout(heads[0], 0.2), test_ids, test_images,
                                       folder / "test_encoder_dropout.parquet", args.samples)
                results["uncertainty"][f"seed{seed}/{round_}"] = uncertainty(loop, dict(zip(SOURCES, (
                    test_conc[..., : args.samples], alone, test_conc, deep))))
            results["rounds"][key]["seconds"] = round(time.perf_counter() - began, 1)
            print(loop.name, key, results["rounds"][key], flush=True)
            if round_ == args.rounds:
                break
            models = np.repeat(np.arange(len(heads)), args.samples)
            picked = choose(arm, scores, args.acquire, seed=seed + round_, embeddings=embeddings[unlabelled],
                            concentrations=pool_conc, schema=loop.schema, models=models, volunteers=VOLUNTEERS)
            new = unlabelled[picked["row"].to_numpy()]
            if len(chosen) < round_ + 1:
                chosen.append([pool_ids[i] for i in new])
            rows, votes = np.concatenate([rows, new]), np.concatenate([votes, loop.ask(new, arm_rng)])
            save()


# --------------------------------------------------------------------------------------------- summaries
def labels_to_reach(curve: pd.Series, target: float) -> float:
    """Labelled galaxies at which a curve first reaches ``target``, linearly interpolated; NaN if never."""
    x, y = curve.index.to_numpy(float), curve.to_numpy()
    for i in range(len(y)):
        if y[i] <= target:
            return x[i] if i == 0 else x[i - 1] + (x[i] - x[i - 1]) * (y[i - 1] - target) / (y[i - 1] - y[i])
    return float("nan")


def curves(loop_results: dict[str, Any], seeds: list[int]) -> tuple[pd.DataFrame, str]:
    """Every round as a table (seed, strategy, labelled, metrics) and the name of the goal's metric."""
    rows = [{"seed": int(k.split("/")[0][4:]), "strategy": k.split("/")[1], **v}
            for k, v in loop_results["rounds"].items() if int(k.split("/")[0][4:]) in seeds]
    table = pd.DataFrame(rows)
    metric = next(c for c in table.columns if c not in ("seed", "strategy", "labelled"))
    return table, metric


def summarise_curves(loop: Loop, loop_results: dict[str, Any], seeds: list[int], measured: set[int],
                     result: Result) -> None:
    """Each strategy's learning curve as an arm, the curves side by side, and the labels each needs to reach
    random's final error (an arm with a seed from an earlier run is borrowed)."""
    table, metric = curves(loop_results, seeds)
    mean = table.groupby(["strategy", "labelled"])[metric].mean().unstack("strategy")[list(ARMS)]
    random = mean["random"].dropna()
    target, budget = random.iloc[-1], int(random.index[-1])
    fell = bool(target < random.iloc[0])
    names = [f"{loop.name}, {arm}" for arm in ARMS]
    notes = []
    for arm, name in zip(ARMS, names):
        needed = labels_to_reach(mean[arm].dropna(), target)
        fewer = 1 - needed / budget if np.isfinite(needed) and fell else float("nan")
        figures = {metric: {int(n): float(v) for n, v in mean[arm].dropna().items()},
                   "labels_to_reach_random_final": float(needed), "fewer_labels": float(fewer), "seeds": len(seeds)}
        if set(seeds) <= measured:
            result.arm(name, **figures)
        else:
            result.borrow(name, figures, {"from": f"the work folder's results.json: seeds {sorted(set(seeds) - measured)} "
                                                  "from an earlier run"})
        text = "never" if not np.isfinite(needed) else f"at {needed:.0f} labels" + (
            f", {fewer:.0%} fewer (goal: at least 35%)" if fell else "")
        notes.append(f"{arm} reaches random's final {metric} ({target:.4f} at {budget} labels) {text}.")
    final = table[table["labelled"] == table["labelled"].max()].groupby("strategy")[metric]
    rows = [[str(n), *(f"{mean.loc[n, arm]:.4f}" for arm in ARMS)] for n in mean.index]
    rows.append(["range between seeds, last round", *(f"{final.max()[arm] - final.min()[arm]:.4f}" for arm in ARMS)])
    result.table(["labelled", *ARMS], rows, arms=names, align=["---"] + ["---:"] * len(ARMS),
                 title=f"{loop.name}: test {metric} by labelled galaxies, mean of seeds {', '.join(map(str, seeds))}")
    if not fell:
        notes.append(f"random's {metric} did not fall over the rounds ({random.iloc[0]:.4f} at {random.index[0]} "
                     "labels): no strategy is credited with fewer labels.")
    result.note(" ".join(notes))


def summarise_uncertainty(loop: Loop, loop_results: dict[str, Any], seeds: list[int], result: Result) -> None:
    """Each source's spread and calibration in the first and the last round of random, mean over seeds."""
    rows = [{"seed": int(k.split("/")[0][4:]), "round": int(k.split("/")[1]), "source": source, **v}
            for k, per_source in loop_results["uncertainty"].items() for source, v in per_source.items()
            if int(k.split("/")[0][4:]) in seeds]
    table = pd.DataFrame(rows)
    last = table["round"].max()
    first_and_last = table[table["round"].isin([0, last])].drop(columns="seed")
    mean = first_and_last.groupby(["round", "source"], sort=False).mean(numeric_only=True)
    metrics = [c for c in mean.columns if c not in ("samples", "spread", "coverage_50", "coverage_90", "nll")]
    result.table(["round", "uncertainty", "samples", "spread", "in 50% interval", "in 90% interval", "NLL per galaxy",
                  *metrics],
                 [[str(r), source, f"{v['samples']:.0f}", f"{v['spread']:.4f}", f"{v['coverage_50']:.3f}",
                   f"{v['coverage_90']:.3f}", f"{v['nll']:.1f}", *(f"{v[m]:.4f}" for m in metrics)]
                  for (r, source), v in mean.iterrows()],
                 title=f"{loop.name}: each kind of uncertainty on the test votes, rounds 0 and {last} of random "
                       "(spread: the standard deviation of a vote fraction across samples)")


def representativeness(loop: Loop, loop_results: dict[str, Any], embeddings: np.ndarray, seeds: list[int],
                       result: Result) -> None:
    """Whether the chosen galaxies look like the pool: how near every pool galaxy is to a chosen one (encoder
    features), and the Kolmogorov-Smirnov distance between the chosen and the pool's morphology."""
    index = pd.Series(np.arange(len(loop.pool)), index=loop.pool["id_str"])
    label, values = loop.morphology
    rows = []
    for arm in ARMS:
        near, ks, mean = [], [], []
        for seed in seeds:
            picked = index.loc[[i for batch in loop_results["chosen"][f"seed{seed}/{arm}"] for i in batch]].to_numpy()
            near.append(cKDTree(embeddings[picked]).query(embeddings)[0].mean())
            ks.append(ks_2samp(values[picked], values).statistic)
            mean.append(np.nanmean(values[picked]))
        rows.append([arm, f"{np.mean(near):.3f}", f"{np.mean(ks):.3f}", f"{np.mean(mean):.3f}"])
    rows.append(["the pool", "", "", f"{np.nanmean(values):.3f}"])
    result.table(["strategy", "pool to nearest chosen", "KS distance", f"mean {label}"], rows,
                 arms=[f"{loop.name}, {arm}" for arm in ARMS], align=["---", "---:", "---:", "---:"],
                 title=f"{loop.name}: the galaxies each strategy chose against the pool (distance in the encoder's "
                       "principal components; Kolmogorov-Smirnov distance of their morphology), mean of seeds")


def plot_curves(loops: list[Loop], results: dict[str, Any], seeds: list[int], path: Path) -> None:
    fig, axes = plt.subplots(1, len(loops), figsize=(6 * len(loops), 4), squeeze=False)
    for ax, loop in zip(axes[0], loops):
        table, metric = curves(results["loops"][loop.name], seeds)
        for arm, colour in zip(ARMS, COLOURS):
            part = table[table["strategy"] == arm]
            for seed in seeds:
                one = part[part["seed"] == seed]
                ax.plot(one["labelled"], one[metric], color=colour, alpha=0.25, lw=1)
            mean = part.groupby("labelled")[metric].mean()
            ax.plot(mean.index, mean.to_numpy(), color=colour, lw=2, marker="o", label=arm)
        ax.axhline(table[table["strategy"] == "random"].groupby("labelled")[metric].mean().iloc[-1], color="grey",
                   ls=":", lw=1, label="random's final error")
        ax.set(xlabel="labelled galaxies", ylabel=f"test {metric}", title=f"{loop.name}: mean of {len(seeds)} seed(s)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_chosen(loops: list[Loop], results: dict[str, Any], embeddings: dict[str, np.ndarray], seed: int,
                path: Path) -> None:
    """Per loop: the pool in its encoder's first two principal components, each strategy's chosen galaxies on it,
    and their morphology's distribution beside the pool's."""
    fig, axes = plt.subplots(len(loops), len(ARMS) + 1, figsize=(3.2 * (len(ARMS) + 1), 3.2 * len(loops)),
                             squeeze=False)
    for row, loop in zip(axes, loops):
        vectors, (label, values) = embeddings[loop.name], loop.morphology
        index = pd.Series(np.arange(len(loop.pool)), index=loop.pool["id_str"])
        row[-1].hist(values, bins=20, density=True, color="lightgrey", label="pool")
        for ax, arm, colour in zip(row, ARMS, COLOURS):
            picked = index.loc[[i for b in results["loops"][loop.name]["chosen"][f"seed{seed}/{arm}"] for i in b]]
            ax.scatter(vectors[:, 0], vectors[:, 1], s=2, color="lightgrey")
            ax.scatter(vectors[picked, 0], vectors[picked, 1], s=6, color=colour)
            ax.set(title=f"{loop.name}: {arm}", xticks=[], yticks=[])
            row[-1].hist(values[picked], bins=20, density=True, histtype="step", color=colour, lw=1.5, label=arm)
        row[0].set_ylabel("encoder features, PCA 1-2")
        row[-1].set(xlabel=label, title=f"{loop.name}: chosen vs pool")
        row[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pool_embeddings(loop: Loop, args: argparse.Namespace) -> np.ndarray:
    """The pool's encoder features, ``--pca`` principal components (``galaxymorph embed``; the encoder is frozen)."""
    folder = args.work / loop.name
    loop.pool[["id_str", "file_loc"]].to_csv(folder / "pool.csv", index=False)
    out = folder / "pool_embeddings.parquet"
    embed(loop.encoder, out, catalogue=folder / "pool.csv", pca=min(args.pca, len(loop.pool)), run=RunSettings(
        batch_size=256, workers=args.workers, progress=False))
    frame, vectors, _ = read_embeddings(out)
    return vectors[pd.Series(np.arange(len(frame)), index=frame["id_str"]).loc[loop.pool["id_str"]].to_numpy()]


# ------------------------------------------------------------------------------------------- the harness
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loops", default="gz2,sim", help="gz2 (real votes) and/or sim (the simulator)")
    parser.add_argument("--seeds", default="0,1,2")
    add_gz2_option(parser)
    parser.add_argument("--pretrain", type=int, default=None,
                        help="galaxies that train the encoder (sim: default 2000; gz2: all 4,146 of the earlier campaign)")
    parser.add_argument("--pool", type=int, default=None, help="galaxies that can be asked for (sim: 3000; gz2: all)")
    parser.add_argument("--test", type=int, default=None, help="fixed test galaxies (sim: 500; gz2: the test split)")
    parser.add_argument("--start", type=int, default=100, help="labelled galaxies at the start (random)")
    parser.add_argument("--acquire", type=int, default=100, help="galaxies asked for per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4, help="heads fine-tuned per round (the ensemble; at least 2)")
    parser.add_argument("--samples", type=int, default=5, help="MC-dropout passes of each head")
    parser.add_argument("--epochs", type=int, default=30, help="most epochs of a head (early stopping, patience 5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="the heads' learning rate")
    parser.add_argument("--batch-size", type=int, default=16, help="the heads'")
    parser.add_argument("--arch", default="resnet18", help="the pretrained encoder's architecture")
    parser.add_argument("--pretrain-epochs", type=int, default=20)
    parser.add_argument("--pretrain-lr", type=float, default=1e-3)
    parser.add_argument("--pretrain-batch-size", type=int, default=64)
    parser.add_argument("--sim-px", type=int, default=64, help="simulated image px (stored as is)")
    parser.add_argument("--stored", type=int, default=80, help="gz2: px the images are decoded to")
    parser.add_argument("--size", type=int, default=64, help="model input px")
    parser.add_argument("--pca", type=int, default=16, help="principal components of the encoder features to cluster")
    parser.add_argument("--workers", type=int, default=2, help="loader and simulation processes")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--plots", type=output_folder, help="folder for active_learning.png and active_learning_chosen.png "
                        "(default: the work folder; the user guide's are in docs)")


def measure(args: argparse.Namespace, result: Result) -> None:
    if args.heads < 2:
        raise SystemExit("--heads must be at least 2: batch-bald and the ensemble need several heads")
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                if k not in ("loops", "seeds", "threads", "plots", "workers", "gz2", "tiny", "work_root", "results",
                             "work", "shared")}
    path = args.work / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {"settings": settings, "loops": {}}
    if results["settings"] != settings:
        raise SystemExit(f"{args.work} holds results of other settings ({results['settings']}); choose another "
                         "--work-root")

    def save() -> None:
        path.write_text(json.dumps(results, indent=1))

    makers = {"gz2": gz2_loop, "sim": simulator_loop}
    loops, features = [], {}
    for name in args.loops.split(","):
        loop = makers[name](args)
        loops.append(loop)
        mine = results["loops"].setdefault(name, {"rounds": {}, "chosen": {}, "uncertainty": {}})
        prep = Preprocessing.from_dict(load_encoder(loop.encoder).config["preprocessing"])
        images, test_images = (decode_images(frame["id_str"].tolist(), frame["file_loc"].tolist(), prep, args.workers,
                                             False) for frame in (loop.pool, loop.test))
        features[name] = pool_embeddings(loop, args)
        measured = set()
        for seed in seeds:
            if not all(f"seed{seed}/{arm}/{args.rounds}" in mine["rounds"] for arm in ARMS):
                run_seed(loop, seed, images, test_images, features[name], args, mine, save)
                measured.add(seed)
                save()
        summarise_curves(loop, mine, seeds, measured, result)
        summarise_uncertainty(loop, mine, seeds, result)
        representativeness(loop, mine, features[name], seeds, result)
    plots = args.plots or args.work
    plots.mkdir(parents=True, exist_ok=True)
    plot_curves(loops, results, seeds, plots / "active_learning.png")
    plot_chosen(loops, results, features, seeds[0], plots / "active_learning_chosen.png")
    result.figures["plots"] = [plots / "active_learning.png", plots / "active_learning_chosen.png"]
    result.figures["seconds_per_round"] = {name: {k: v["seconds"] for k, v in results["loops"][name]["rounds"].items()}
                                           for name in args.loops.split(",")}
