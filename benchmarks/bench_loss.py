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

The competitors run in a separate virtual environment (``benchmarks/_work/``,
created on first use) so their packages never enter ours. It reuses this
interpreter's torch through a ``.pth`` file instead of installing another
(torch is gigabytes and this machine caps its version); zoobot and pyro are
installed with ``--no-deps`` because zoobot's loss module imports only torch and
pyro's other needs (numpy, tqdm) come with that path. The venv runs this same
file with ``--worker zoobot`` (ours runs it with ``--worker ours``): workers
answer load and timing requests as JSON lines, returning per-question losses
and gradients that are compared with ours and with a float64 closed form.

All three compute the full Dirichlet-Multinomial log-likelihood, multinomial
coefficient included, per galaxy and question, so losses and gradients are
directly comparable. Each step is ``loss(conc, counts).sum(1).mean().backward()``.

Usage::

    .venv/bin/python benchmarks/bench_loss.py [--batch 256] [--rounds 7] [--threads 1] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
import venv
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils import benchmark

WORK = Path(__file__).resolve().parent / "_work"
VENV = WORK / "zoobot-venv"
COMPETITOR_PACKAGES = ("zoobot==2.9.*", "pyro-ppl==1.9.*", "pyro-api", "opt_einsum")
TREES = ("gz_decals_dr5", "gz2")
TOLERANCE = 1e-5
MIN_RUN_TIME = 0.2  # seconds per implementation per round
# The default is the CPU time of the (single) computing thread: on a loaded, shared machine
# elapsed time counts the time other jobs hold the core, and the median of blocks favours
# the fastest code (short blocks are more often untouched), which inflated our ratios ~3x.
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


# ----------------------------------------------------------------- shared by both sides


def time_step(step: Callable[[], Any], threads: int, clock: str) -> float:
    """Median seconds of one call, by torch.utils.benchmark: elapsed, or this thread's CPU time."""
    timer = benchmark.Timer(
        "step()", globals={"step": step}, num_threads=threads, timer=CLOCKS[clock]
    )
    return timer.blocked_autorange(min_run_time=MIN_RUN_TIME).median


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
            answer = {"seconds": time_step(steps[tree, request["name"]], request["threads"], request["clock"])}
        print(json.dumps(answer), flush=True)


def versions(side: str) -> dict[str, str]:
    from importlib.metadata import version

    return {p: version(p) for p in (("torch",) if side == "ours" else ("zoobot", "pyro-ppl"))}


# ----------------------------------------------------------------- our side


def ensure_competitor_venv() -> Path:
    """Create benchmarks/_work/zoobot-venv on first use; return its python."""
    python = VENV / "bin" / "python"
    ready = VENV / ".ready"
    if ready.exists():
        return python
    print(f"creating {VENV} (once) ...", flush=True)
    venv.create(VENV, clear=True, with_pip=True)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    # a path line in a .pth file puts our site-packages (torch, numpy, tqdm) on the venv's sys.path,
    # after its own packages; our editable galaxymorph stays out (nested .pth files are not read)
    our_site = Path(torch.__file__).resolve().parents[1]
    (Path(site) / "_reuse_torch.pth").write_text(f"{our_site}\n")
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", *COMPETITOR_PACKAGES], check=True
    )
    ready.touch()
    return python


def simulated_inputs(schema, batch: int, volunteers: int = 40, seed: int = 0) -> dict:
    """Votes flowing down the tree (a question gets the votes of the answers leading to it) and head-like concentrations."""
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = np.zeros((batch, schema.n_answers))
    for q in schema.topological_order:
        parents = list(schema.parent_answers[q])
        reached = np.minimum(counts[:, parents].sum(axis=1), volunteers) if parents else np.full(batch, volunteers)
        answers = schema.slices[q]
        fractions = rng.dirichlet(np.ones(answers.stop - answers.start), size=batch)
        counts[:, answers] = rng.multinomial(reached.astype(np.int64), fractions)
    concentrations = 1 + 99 / (1 + np.exp(-rng.normal(0, 2, size=counts.shape)))
    return {
        "concentrations": torch.tensor(concentrations, dtype=torch.float32),
        "counts": torch.tensor(counts, dtype=torch.float32),
        "questions": [[q.name, list(q.columns)] for q in schema.questions],
    }


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
    """A python running this file with --worker: ours, or the competitors' venv."""

    def __init__(self, python: Path | str, side: str) -> None:
        self.process = subprocess.Popen(
            [python, __file__, "--worker", side], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, **request: Any) -> dict:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the competitors' worker stopped; see its error above")
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin
        self.process.stdin.close()
        self.process.wait()


def run(batch: int, rounds: int, threads: int, clock: str) -> None:
    from galaxymorph import get_schema

    # every loss is timed in a worker process, so all three wait and wake alike between rounds
    workers = {"ours": Worker(sys.executable, "ours"), "zoobot": Worker(ensure_competitor_venv(), "zoobot")}
    names = {"ours": "ours", "pyro loop": "zoobot", "zoobot 2.9": "zoobot"}  # implementation -> worker
    rows = []
    try:
        for tree in TREES:
            schema = get_schema(tree)
            inputs = simulated_inputs(schema, batch)
            path = WORK / f"inputs_{tree}_{batch}.pt"
            torch.save(inputs, path)
            results, versions = {}, {}
            for worker in workers.values():
                answer = worker.ask(do="load", tree=tree, path=str(path))
                versions.update(answer.pop("versions"))
                results.update({name: [torch.tensor(r["loss"]), torch.tensor(r["grad"])] for name, r in answer.items()})
            conc, counts = inputs["concentrations"].double(), inputs["counts"].double()
            exact = loss_and_gradient(lambda c, n: exact_nll(c, n, inputs["questions"]), conc, counts)
            vs_exact = {name: max(map(relative_error, results[name], exact)) for name in names}
            vs_ours = {name: max(map(relative_error, results["ours"], results[name])) for name in list(names)[1:]}

            seconds: dict[str, list[float]] = {name: [] for name in names}
            order = list(names)
            for r in range(rounds):  # interleaved, rotating who goes first
                for name in order[r % 3 :] + order[: r % 3]:
                    request = dict(do="time", tree=tree, name=name, threads=threads, clock=clock)
                    seconds[name].append(workers[names[name]].ask(**request)["seconds"])
            ms = {name: 1e3 * statistics.median(s) for name, s in seconds.items()}
            spread = ", ".join(f"{name} {1e3 * min(s):.3f}-{1e3 * max(s):.3f}" for name, s in seconds.items())
            print(f"{tree}: per-round ms {spread}", flush=True)
            rows.append((tree, schema.n_answers, ms, vs_ours, vs_exact))
    finally:
        for worker in workers.values():
            worker.close()

    print(
        f"\nbatch {batch}, {threads} thread(s), {clock} clock, medians of {rounds} interleaved rounds; {versions}"
        "\nrelative differences are max|diff| / max|reference| over per-question losses and gradients\n"
    )
    print(
        "| tree | answers | ours ms | pyro loop ms | zoobot 2.9 ms | pyro / ours | zoobot / ours "
        "| ours vs pyro | ours vs zoobot | vs float64: ours, pyro, zoobot |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for tree, answers, ms, vs_ours, vs_exact in rows:
        print(
            f"| {tree} | {answers} | {ms['ours']:.3f} | {ms['pyro loop']:.3f} | {ms['zoobot 2.9']:.3f} "
            f"| {ms['pyro loop'] / ms['ours']:.1f}x | {ms['zoobot 2.9'] / ms['ours']:.1f}x "
            f"| {vs_ours['pyro loop']:.1e} | {vs_ours['zoobot 2.9']:.1e} "
            f"| {', '.join(f'{vs_exact[name]:.1e}' for name in names)} |"
        )
    if any(e > TOLERANCE for *_, vs_ours, _ in rows for e in vs_ours.values()):
        sys.exit(f"losses or gradients differ from Zoobot's by more than {TOLERANCE} relative")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu", help="cpu: see CLOCKS")
    parser.add_argument("--worker", choices=("ours", "zoobot"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        serve(args.worker)
    else:
        WORK.mkdir(exist_ok=True)
        run(args.batch, args.rounds, args.threads, args.clock)


if __name__ == "__main__":
    main()
