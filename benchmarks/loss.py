"""Forward+backward time of our vectorised loss against Zoobot's, side by side.

Compared, on the same saved inputs (batch of simulated votes down each tree and
concentrations in Zoobot's head range 1..100), for gz_decals_dr5 (34 answers)
and gz2 (37 answers):

* ours: ``galaxymorph.losses.DirichletMultinomialLoss``;
* pyro loop: Zoobot 2.0 (the version behind its papers), a Python loop over
  questions of ``-pyro DirichletMultinomial(total_count, concentration).log_prob(counts)``
  with integer counts and ``validate_args=True``, after its NaN guard on the predictions;
* zoobot 2.9: the public package's own ``CustomMultiQuestionLoss`` with
  ``get_dirichlet_neg_log_prob``.

Each implementation is timed with ``torch.utils.benchmark`` in a worker
process, one thread by default (these batch-256 tensors are mostly below
torch's intra-op parallel grain, and on this shared 2-core machine a second
OpenMP thread only added stalls), in interleaved rounds; medians are reported.

The competitors run in zoobot's own environment (``shared/zoobot-venv`` in the work
root, built on first use: ``benchmarks._shared.zoobot_python``) so their packages never
enter ours; it reuses this interpreter's torch. The workers run this module
(``python -m benchmarks.loss --worker zoobot``, ``--worker ours`` for ours): they answer
load and timing requests as JSON lines, returning per-question losses and gradients that
are compared with ours and with a float64 closed form. With ``--tiny`` zoobot's
environment is not built and ours is compared with the closed form alone.

All three compute the full Dirichlet-Multinomial log-likelihood, multinomial
coefficient included, per galaxy and question, so losses and gradients are
directly comparable. Each step is ``loss(conc, counts).sum(1).mean().backward()``.

    python -m benchmarks loss [--batch 256] [--rounds 7] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils import benchmark

from benchmarks._harness import ROOT, Result

TREES = ("gz_decals_dr5", "gz2")
TOLERANCE = 1e-5
# The default is the CPU time of the (single) computing thread: on a loaded, shared machine
# elapsed time counts the time other jobs hold the core, and the median of blocks favours
# the fastest code (short blocks are more often untouched), which inflated our ratios ~3x.
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}
TINY = {"batch": 8, "rounds": 1, "min_run_time": 0.01}
WORKER_OF = {"ours": "ours", "pyro loop": "zoobot", "zoobot 2.9": "zoobot"}  # implementation -> worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="cpu: see CLOCKS")
    parser.add_argument("--min-run-time", type=float, default=0.2, help="seconds per implementation per round")


# ----------------------------------------------------------------- shared by both sides


def time_step(step: Callable[[], Any], threads: int, clock: str, min_run_time: float) -> float:
    """Median seconds of one call, by torch.utils.benchmark: elapsed, or this thread's CPU time."""
    timer = benchmark.Timer(
        "step()", globals={"step": step}, num_threads=threads, timer=CLOCKS[clock]
    )
    return timer.blocked_autorange(min_run_time=min_run_time).median


def loss_and_gradient(per_question: Callable[[torch.Tensor, Any], torch.Tensor], conc: torch.Tensor, counts: Any):
    """Per-question loss (B, Q) and the gradient of the training loss (sum over questions, mean over galaxies)."""
    leaf = conc.clone().requires_grad_()
    losses = per_question(leaf, counts)
    losses.sum(dim=1).mean().backward()
    return losses.detach(), leaf.grad


def training_step(per_question: Callable[[torch.Tensor, Any], torch.Tensor], conc: torch.Tensor, counts: Any):
    """A closure doing one forward+backward, what the benchmark times."""
    leaf = conc.clone().requires_grad_()

    def step() -> None:
        leaf.grad = None
        per_question(leaf, counts).sum(dim=1).mean().backward()

    return step


# ----------------------------------------------------------------- the competitors' side


def competitor_losses(inputs: dict) -> dict[str, tuple[Callable, Any]]:
    """The two Zoobot losses on these inputs, each as (per-question loss function, its targets)."""
    import pyro.distributions
    from zoobot.pytorch.training import losses as zoobot_losses

    counts, questions = inputs["counts"], inputs["questions"]
    starts, width = [], []
    for _, columns in questions:
        starts.append(sum(width))
        width.append(len(columns))

    def pyro_loop(conc: torch.Tensor, votes: torch.Tensor) -> torch.Tensor:
        # Zoobot 2.0: NaN/inf predictions replaced by 1 (with a warning), then per question
        # DirichletMultinomial with integer counts and validated arguments
        bad = torch.isnan(conc) | torch.isinf(conc)
        if bad.any():
            logging.warning("NaN or inf concentrations, replaced by 1")
        conc = torch.where(bad, torch.ones(1, dtype=conc.dtype), conc)
        per_question = []
        for start, n in zip(starts, width):
            votes_q = votes[:, start : start + n]
            dist = pyro.distributions.DirichletMultinomial(
                total_count=votes_q.sum(dim=1).int(),
                concentration=conc[:, start : start + n],
                is_sparse=False,
                validate_args=True,
            )
            per_question.append(-dist.log_prob(votes_q.int()))
        return torch.stack(per_question, dim=1)

    # zoobot names answer columns question + answer; ours are question_answer
    pairs = {name: [column[len(name) :] for column in columns] for name, columns in questions}
    zoobot_loss = zoobot_losses.CustomMultiQuestionLoss(pairs, zoobot_losses.get_dirichlet_neg_log_prob)
    targets = {column: counts[:, i] for i, column in enumerate(c for _, cols in questions for c in cols)}
    return {"pyro loop": (pyro_loop, counts), "zoobot 2.9": (zoobot_loss, targets)}


def our_losses(inputs: dict, tree: str) -> dict[str, tuple[Callable, Any]]:
    from galaxymorph import get_schema
    from galaxymorph.losses import DirichletMultinomialLoss

    return {"ours": (DirichletMultinomialLoss(get_schema(tree), reduction="none"), inputs["counts"])}


def serve(side: str) -> None:
    """Worker loop: one JSON request per stdin line, one JSON answer per stdout line."""
    steps: dict[tuple[str, str], Callable[[], None]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        tree = request["tree"]
        if request["do"] == "load":
            inputs = torch.load(request["path"], weights_only=True)
            conc = inputs["concentrations"]
            losses = our_losses(inputs, tree) if side == "ours" else competitor_losses(inputs)
            answer: dict[str, Any] = {}
            for name, (fn, targets) in losses.items():
                steps[tree, name] = training_step(fn, conc, targets)
                loss, grad = loss_and_gradient(fn, conc, targets)
                answer[name] = {"loss": loss.tolist(), "grad": grad.tolist()}
            answer["versions"] = versions(side)
        else:
            answer = {"seconds": time_step(steps[tree, request["name"]], request["threads"], request["clock"],
                                         request["min_run_time"])}
        print(json.dumps(answer), flush=True)


def versions(side: str) -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in (("torch",) if side == "ours" else ("zoobot", "pyro-ppl"))}


# ----------------------------------------------------------------- our side


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs|: float32 rounding of lgamma sums is relative to the largest terms."""
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max())


def exact_nll(conc: torch.Tensor, counts: torch.Tensor, questions: list) -> torch.Tensor:
    """The closed form question by question in float64, the yardstick for all three."""
    per_question, start = [], 0
    for _, columns in questions:
        a, n = conc[:, start : start + len(columns)], counts[:, start : start + len(columns)]
        big_a, big_n = a.sum(dim=1), n.sum(dim=1)
        log_p = (
            torch.lgamma(big_n + 1) + torch.lgamma(big_a) - torch.lgamma(big_n + big_a)
            + (torch.lgamma(n + a) - torch.lgamma(a) - torch.lgamma(n + 1)).sum(dim=1)
        )
        per_question.append(-log_p)
        start += len(columns)
    return torch.stack(per_question, dim=1)


class Worker:
    """A python running this module with --worker: ours, or in zoobot's environment the competitors'."""

    def __init__(self, python: Path | str, side: str) -> None:
        self.process = subprocess.Popen([python, "-m", "benchmarks.loss", "--worker", side], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request: Any) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("a loss worker stopped; see its error above")
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait()


def measure(args: argparse.Namespace, result: Result) -> None:
    # imported here, not above: zoobot's environment imports this module (as a worker) without galaxymorph
    from benchmarks._shared import simulated_loss_inputs, zoobot_python, zoobot_skip_reason
    from galaxymorph import get_schema

    names = dict(WORKER_OF)
    workers = {"ours": Worker(sys.executable, "ours")}  # every loss is timed in a worker: all wait and wake alike
    skipped = zoobot_skip_reason(args)
    if skipped:
        for name in ("pyro loop", "zoobot 2.9"):
            result.skip(name, skipped)
            del names[name]
    else:
        workers["zoobot"] = Worker(zoobot_python(args), "zoobot")
    versions: dict[str, str] = {}
    try:
        for tree in TREES:
            inputs = simulated_loss_inputs(get_schema(tree), args.batch)
            path = args.work / f"inputs_{tree}_{args.batch}.pt"
            torch.save(inputs, path)
            losses = {}
            for worker in workers.values():
                answer = worker.ask(do="load", tree=tree, path=str(path))
                versions.update(answer.pop("versions"))
                losses.update({name: [torch.tensor(r["loss"]), torch.tensor(r["grad"])] for name, r in answer.items()})
            conc, counts = inputs["concentrations"].double(), inputs["counts"].double()
            exact = loss_and_gradient(lambda c, n, questions=inputs["questions"]: exact_nll(c, n, questions), conc, counts)
            seconds: dict[str, list[float]] = {name: [] for name in names}
            order = list(names)
            for r in range(args.rounds):  # interleaved, rotating who goes first
                for name in order[r % len(order):] + order[: r % len(order)]:
                    request = dict(do="time", tree=tree, name=name, threads=args.threads, clock=args.clock,
                                   min_run_time=args.min_run_time)
                    seconds[name].append(workers[names[name]].ask(**request)["seconds"])
            for name in names:
                result.arm(f"{name}, {tree}", ms=1e3 * statistics.median(seconds[name]),
                           ms_rounds=[1e3 * s for s in seconds[name]],
                           vs_float64=max(map(relative_error, losses[name], exact)),
                           vs_ours=max(map(relative_error, losses["ours"], losses[name])))
            print(f"{tree}: per-round ms " + ", ".join(f"{name} {1e3 * min(s):.3f}-{1e3 * max(s):.3f}"
                                                       for name, s in seconds.items()), flush=True)
    finally:
        for worker in workers.values():
            worker.close()
    result.figures["versions"] = versions
    competitors = [name for name in names if name != "ours"]
    result.note(f"batch {args.batch}, {args.threads} thread(s), {args.clock} clock, medians of {args.rounds} "
                f"interleaved rounds; {versions}. Relative differences are max|diff| / max|reference| over "
                "per-question losses and gradients.")
    rows = []
    for tree in TREES:
        ours = result.arms[f"ours, {tree}"]
        rows.append([tree, str(get_schema(tree).n_answers), f"{ours['ms']:.3f}"]
                    + [f"{result.arms[f'{name}, {tree}']['ms']:.3f}" for name in competitors]
                    + [f"{result.ratio(f'{name}, {tree}', f'ours, {tree}', 'ms'):.1f}x" for name in competitors]
                    + [f"{result.arms[f'{name}, {tree}']['vs_ours']:.1e}" for name in competitors]
                    + [", ".join(f"{result.arms[f'{name}, {tree}']['vs_float64']:.1e}" for name in names)])
    result.table(["tree", "answers", "ours ms", *(f"{n} ms" for n in competitors), *(f"{n} / ours" for n in competitors),
                  *(f"ours vs {n}" for n in competitors), f"vs float64: {', '.join(names)}"],
                 rows, arms=list(result.arms), align=["---", "---:", "---:", *["---:"] * 3 * len(competitors), "---"])
    worst = max((a["vs_ours"] for a in result.arms.values()), default=0.0)
    if worst > TOLERANCE:
        raise SystemExit(f"losses or gradients differ from Zoobot's by more than {TOLERANCE} relative ({worst:.1e})")


if __name__ == "__main__":  # a worker (see Worker): python -m benchmarks.loss --worker ours|zoobot
    serve(sys.argv[sys.argv.index("--worker") + 1])
