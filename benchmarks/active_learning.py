"""Active learning on the simulator: does choosing galaxies by BALD need fewer labels than choosing at random?

    python -m benchmarks active_learning [--pool 3000] [--test 500] [--start 100] [--acquire 100]
        [--rounds 5] [--seeds 0,1] [--images-seen 12000] [--epoch-images 800] [--arch resnet10t] [--size 40]

A pool of simulated galaxies (images at ``--sim-px``) and a fixed simulated test set, scored by
the mean absolute error of the predicted vote fractions against the simulator's true answer
probabilities. Each seed starts from ``--start`` random galaxies labelled by the simulated
volunteers (40 on average, as in the catalogue); each round trains a model from scratch on
the labelled galaxies for a fixed budget of ``--images-seen`` images (so every round costs the
same), predicts the unlabelled pool with ``--samples`` MC-dropout passes, and the simulated
volunteers classify ``--acquire`` more galaxies: the highest BALD scores
(:func:`galaxymorph.acquisition.acquisition_scores`) or a random choice. Both strategies share
each seed's starting set and first model.

Prints a table of test error against labelled galaxies and draws it (``--plot``; the user
guide's is docs/active_learning.png). Every finished round is kept in the work folder's
results.json, so a re-run with the same settings resumes; a strategy with rounds from an
earlier run is marked in the result file as not measured side by side.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, RandomSampler  # noqa: E402

from benchmarks._harness import Result  # noqa: E402
from benchmarks._shared import TINY_ARCH  # noqa: E402
from galaxymorph.acquisition import acquisition_scores  # noqa: E402
from galaxymorph.data.datamodule import GalaxyDataModule, collate  # noqa: E402
from galaxymorph.data.transforms import Preprocessing  # noqa: E402
from galaxymorph.evaluate import TRUTH_PREFIX, evaluate_arrays  # noqa: E402
from galaxymorph.predict import predict, read_concentrations, read_predictions  # noqa: E402
from galaxymorph.schema import get_schema  # noqa: E402
from galaxymorph.simulate import simulate_catalogue, simulate_votes  # noqa: E402
from galaxymorph.simulate.volunteers import volunteer_counts  # noqa: E402
from galaxymorph.stats import expected_fractions  # noqa: E402
from galaxymorph.training import TrainConfig, train  # noqa: E402

SCHEMA = get_schema("gz_decals_dr5")
STRATEGIES = ("bald", "random")
TINY = dict(pool=30, test=10, start=10, acquire=10, rounds=1, seeds="0", images_seen=64, epoch_images=32,
            arch=TINY_ARCH, sim_px=24, size=16, samples=2, batch_size=16, threads=1)


def label(catalogue: pd.DataFrame, rows: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """The simulated volunteers classify these galaxies now: fresh votes drawn from their true probabilities."""
    chosen = catalogue.iloc[rows]
    truth = chosen[[TRUTH_PREFIX + a for a in SCHEMA.answers]].to_numpy()
    votes = simulate_votes(truth, volunteer_counts(len(rows), 40, rng), SCHEMA, rng)
    return pd.concat([chosen[["id_str", "file_loc"]].reset_index(drop=True),
                      pd.DataFrame(votes.astype(float), columns=list(SCHEMA.answers))], axis=1)


class FixedEpochs(GalaxyDataModule):
    """Training epochs of ``epoch_images`` images drawn with replacement from the labelled galaxies.

    A round then costs the same however few galaxies are labelled, and the
    per-epoch work (validation, checkpoints) stays a small share of it.
    """

    def __init__(self, *args, epoch_images: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_images = epoch_images

    def train_dataloader(self) -> DataLoader:
        self.setup()
        train_set = self._datasets["train"]
        draws = RandomSampler(train_set, replacement=True, num_samples=self.epoch_images,
                              generator=torch.Generator().manual_seed(self.seed))
        return DataLoader(train_set, batch_size=self.batch_size, sampler=draws, collate_fn=collate)


def train_and_predict(labelled: pd.DataFrame, everyone: Path, folder: Path, args: argparse.Namespace, seed: int):
    """Train from scratch on the labelled galaxies for the fixed budget; concentrations of every galaxy by id."""
    prep = Preprocessing(stored_size=args.sim_px, image_size=args.size, channels=3)
    data = FixedEpochs(labelled, SCHEMA, prep, batch_size=args.batch_size, seed=seed, val_fraction=0.1,
                       test_fraction=0.0, in_memory=True, epoch_images=args.epoch_images)
    epochs = max(1, math.ceil(args.images_seen / args.epoch_images))
    config = TrainConfig(shards="", out=str(folder / "run"), arch=args.arch, epochs=epochs, batch_size=args.batch_size,
                         lr=args.lr, patience=epochs, workers=0, threads=args.threads, seed=seed, progress=False)
    best = train(config, datamodule=data)
    out = folder / "predictions.parquet"
    predict(best, out, catalogue=everyone, samples=args.samples, batch_size=256, progress=False)
    frame, _, _ = read_predictions(out)
    return pd.Series(list(read_concentrations(frame, SCHEMA)), index=frame["id_str"])


def test_error(concentrations: pd.Series, test: pd.DataFrame) -> float:
    """MAE of the vote fractions against the true probabilities on the test set (questions its volunteers reached)."""
    conc = np.stack(concentrations.loc[test["id_str"]].to_numpy())
    result = evaluate_arrays(conc, test[list(SCHEMA.answers)].to_numpy(), SCHEMA,
                             truth=test[[TRUTH_PREFIX + a for a in SCHEMA.answers]].to_numpy())
    return result["overall"]["truth"]["model"]["mae"]


def spread(concentrations: np.ndarray) -> float:
    """How far the MC samples disagree: the standard deviation of each answer's fraction across samples, averaged."""
    per_sample = np.stack([expected_fractions(concentrations[..., i], SCHEMA) for i in range(concentrations.shape[2])])
    return float(per_sample.std(axis=0).mean())


def run_seed(seed: int, catalogue: pd.DataFrame, everyone: Path, test: pd.DataFrame, args: argparse.Namespace,
             results: dict) -> set[str]:
    """Every round of both strategies for one seed, each saved to results.json at once; returns the rounds run now."""
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(~catalogue["id_str"].isin(test["id_str"]))
    start = rng.choice(pool, args.start, replace=False)
    first = label(catalogue, start, rng)
    ran = set()
    for strategy in STRATEGIES:
        labelled, rows = first, start
        strategy_rng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
        for round_ in range(args.rounds + 1):
            key = f"seed{seed}/{strategy}/{round_}"
            folder = args.work / (f"seed{seed}/shared/0" if round_ == 0 else key)
            began = time.perf_counter()
            conc = train_and_predict(labelled, everyone, folder, args, seed)
            unlabelled = np.setdiff1d(pool, rows)
            pool_conc = np.stack(conc.loc[catalogue["id_str"].iloc[unlabelled]].to_numpy())
            scores = acquisition_scores(pool_conc, SCHEMA, seed=seed)["score"].to_numpy()
            ran.add(key)
            results["rounds"][key] = {"labelled": len(rows), "mae_truth": test_error(conc, test), "pool_bald": float(scores.mean()),
                            "pool_spread": spread(pool_conc), "seconds": round(time.perf_counter() - began, 1)}
            (args.work / "results.json").write_text(json.dumps(results, indent=1))
            print(key, results["rounds"][key], flush=True)
            if round_ == args.rounds:
                break
            if strategy == "bald":
                picked = unlabelled[np.argsort(-scores, kind="stable")[: args.acquire]]
            else:
                picked = strategy_rng.choice(unlabelled, args.acquire, replace=False)
            labelled = pd.concat([labelled, label(catalogue, picked, strategy_rng)], ignore_index=True)
            rows = np.concatenate([rows, picked])
    return ran


def labels_to_reach(curve: pd.Series, target: float) -> float:
    """Labelled galaxies at which a curve first reaches ``target``, linearly interpolated; NaN if never."""
    x, y = curve.index.to_numpy(float), curve.to_numpy()
    for i in range(len(y)):
        if y[i] <= target:
            return x[i] if i == 0 else x[i - 1] + (x[i] - x[i - 1]) * (y[i - 1] - target) / (y[i - 1] - y[i])
    return float("nan")


def summarise(rounds: dict, seeds: list[int], ran: set[str], out_png: Path, result: Result) -> None:
    """The error curves as arms (a strategy with rounds from an earlier run is borrowed), a table and the plot."""
    rows = [{"seed": int(k.split("/")[0][4:]), "strategy": k.split("/")[1], **v} for k, v in rounds.items()
            if int(k.split("/")[0][4:]) in seeds]
    table = pd.DataFrame(rows)
    mean = table.groupby(["strategy", "labelled"])[["mae_truth", "pool_bald", "pool_spread"]].mean()
    for strategy in STRATEGIES:
        keys = [k for k in rounds if k.split("/")[1] == strategy and int(k.split("/")[0][4:]) in seeds]
        curve = {"mae_truth": {int(n): float(v) for n, v in mean.loc[strategy, "mae_truth"].items()},
                 "pool_bald": {int(n): float(v) for n, v in mean.loc[strategy, "pool_bald"].items()},
                 "pool_spread": {int(n): float(v) for n, v in mean.loc[strategy, "pool_spread"].items()}}
        earlier = [k for k in keys if k not in ran]
        if earlier:
            result.borrow(strategy, curve, {"from": f"results.json of the work folder: {len(earlier)} of {len(keys)} "
                                                    "rounds from an earlier run"})
        else:
            result.arm(strategy, **curve)
    wide = table.pivot_table(index="labelled", columns=["strategy", "seed"], values="mae_truth")
    columns = [(strategy, seed) for strategy in STRATEGIES for seed in seeds]
    result.table(["labelled", *(f"{'BALD' if st == 'bald' else st} seed {seed}" for st, seed in columns),
                  "mean BALD", "mean random"],
                 [[str(n), *(f"{wide.loc[n, c]:.4f}" for c in columns),
                   *(f"{mean.loc[(st, n), 'mae_truth']:.4f}" for st in STRATEGIES)] for n in wide.index],
                 arms=list(STRATEGIES), title="MAE against the true probabilities on the test set, by labelled galaxies",
                 align=["---:"] * (len(columns) + 3))
    random_curve, bald_curve = mean.loc["random", "mae_truth"], mean.loc["bald", "mae_truth"]
    target = random_curve.iloc[-1]
    needed = labels_to_reach(bald_curve, target)
    result.figures.update(random_final_mae=float(target), bald_labels_to_reach_it=float(needed))
    result.note(f"random's final error {target:.4f} at {random_curve.index[-1]} labels; BALD reaches it at "
                f"{needed:.0f} labels: {1 - needed / random_curve.index[-1]:.0%} fewer (goal >= 35%)"
                if np.isfinite(needed) else
                f"random's final error {target:.4f}: BALD never reaches it within {bald_curve.index[-1]} labels")
    if target >= random_curve.iloc[0]:
        result.note("(random's error did not fall over the rounds: the models are too weak for this comparison to mean much)")
    spread = mean[["pool_bald", "pool_spread"]].unstack("strategy")
    result.table(["labelled", *(f"{what} {st}" for what, st in spread.columns)],
                 [[str(n), *(f"{v:.4f}" for v in spread.loc[n])] for n in spread.index], arms=list(STRATEGIES),
                 title="spread between MC samples (pool means): BALD score (nats) and std of vote fractions across samples")
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, colour in zip(STRATEGIES, ("tab:red", "tab:blue")):
        for seed in seeds:
            part = table[(table["strategy"] == strategy) & (table["seed"] == seed)]
            ax.plot(part["labelled"], part["mae_truth"], color=colour, alpha=0.3, lw=1)
        curve = mean.loc[strategy, "mae_truth"]
        ax.plot(curve.index, curve.to_numpy(), color=colour, lw=2, marker="o", label=f"{strategy} (mean of {len(seeds)} seeds)")
    ax.axhline(target, color="grey", ls=":", lw=1, label="random's final error")
    ax.set_xlabel("labelled galaxies")
    ax.set_ylabel("test MAE against true probabilities")
    ax.set_title("Active learning on simulated galaxies: BALD vs random")
    ax.legend()
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    result.figures["plot"] = out_png
    print(f"plot: {out_png}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pool", type=int, default=3000, help="galaxies that can be labelled")
    parser.add_argument("--test", type=int, default=500, help="fixed test galaxies")
    parser.add_argument("--start", type=int, default=100, help="labelled galaxies at the start")
    parser.add_argument("--acquire", type=int, default=100, help="galaxies labelled per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--images-seen", type=int, default=12000, help="training budget per round (images)")
    parser.add_argument("--epoch-images", type=int, default=800, help="images drawn (with replacement) per epoch")
    parser.add_argument("--arch", default="resnet10t")
    parser.add_argument("--sim-px", type=int, default=48, help="simulated image px (stored as is)")
    parser.add_argument("--size", type=int, default=40, help="model input px")
    parser.add_argument("--samples", type=int, default=5, help="MC-dropout samples")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--plot", type=Path, help="the picture of the curves (default: in the work folder; the user "
                        "guide's is docs/active_learning.png)")


def measure(args: argparse.Namespace, result: Result) -> None:
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = {k: v for k, v in vars(args).items()
                if k not in ("seeds", "threads", "work", "shared", "plot", "tiny", "work_root", "results")}
    results_file = args.work / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else {"settings": settings, "rounds": {}}
    if results["settings"] != settings:
        raise SystemExit(f"{args.work} holds results of other settings ({results['settings']}); choose another "
                         "--work-root")
    sim = args.work / f"sim_{args.pool + args.test}_{args.sim_px}px"
    catalogue = simulate_catalogue(args.pool + args.test, args.sim_px, sim, seed=1234, workers=2, progress=False)
    catalogue["file_loc"] = [str(sim / f) for f in catalogue["file_loc"]]
    everyone = sim / "everyone.csv"
    catalogue[["id_str", "file_loc"]].to_csv(everyone, index=False)
    test = catalogue.iloc[-args.test:].reset_index(drop=True)
    ran: set[str] = set()
    for seed in seeds:
        if not all(f"seed{seed}/{s}/{args.rounds}" in results["rounds"] for s in STRATEGIES):
            ran |= run_seed(seed, catalogue, everyone, test, args, results)
    summarise(results["rounds"], seeds, ran, args.plot or args.work / "active_learning.png", result)
