"""The Dirichlet-Multinomial loss against an independent closed form, known values and its gradient."""

import math

import numpy as np
import pytest
import torch

from galaxymorph import (
    DirichletMultinomialLoss,
    Question,
    Schema,
    dirichlet_multinomial_nll,
    get_schema,
    losses,
)
from galaxymorph.losses import _DirichletMultinomialNLL

ONE_QUESTION = Schema("one", [Question("q", ("a", "b", "c"))])


def reference_nll(concentrations: np.ndarray, counts: np.ndarray, schema: Schema) -> np.ndarray:
    """-log p answer by answer in float64 Python: 0 for a question with no (or NaN) votes."""
    out = np.zeros((len(counts), schema.n_questions))
    for g in range(len(counts)):
        for q, answers in enumerate(schema.slices):
            n, a = counts[g, answers], concentrations[g, answers]
            if np.isnan(n).all() or n.sum() == 0:
                continue
            log_p = math.lgamma(n.sum() + 1) + math.lgamma(a.sum()) - math.lgamma(n.sum() + a.sum())
            for n_k, a_k in zip(n, a):
                log_p += math.lgamma(n_k + a_k) - math.lgamma(a_k) - math.lgamma(n_k + 1)
            out[g, q] = -log_p
    return out


def random_batch(schema: Schema, galaxies: int = 6, seed: int = 0, whole: bool = True):
    """Concentrations in the head's range and votes with zero-vote questions and a NaN (not provided) question."""
    rng = np.random.default_rng(seed)
    concentrations = rng.uniform(1.0, 100.0, size=(galaxies, schema.n_answers))
    counts = rng.integers(0, 30, size=(galaxies, schema.n_answers)).astype(float)
    if not whole:
        counts *= rng.uniform(0.5, 1.5, size=counts.shape)
    counts[0, schema.slices[1]] = 0.0
    counts[1, schema.slices[2]] = np.nan
    counts[2, schema.slices[0]] = [0.0, 7.0, 0.0]  # both trees start with a three-answer question
    return concentrations, counts


@pytest.mark.parametrize("tree", ["gz_decals_dr5", "gz2"])
@pytest.mark.parametrize("whole", [True, False], ids=["vote-counts", "fractional-counts"])
def test_matches_reference_in_float64_and_float32(tree, whole):
    schema = get_schema(tree)
    concentrations, counts = random_batch(schema, whole=whole)
    expected = reference_nll(concentrations, counts, schema)
    loss = DirichletMultinomialLoss(schema, reduction="none")
    got64 = loss(torch.tensor(concentrations), torch.tensor(counts)).numpy()
    np.testing.assert_allclose(got64, expected, rtol=1e-10, atol=1e-10)
    got32 = loss(torch.tensor(concentrations, dtype=torch.float32), torch.tensor(counts, dtype=torch.float32))
    assert got32.dtype == torch.float32
    assert np.abs(got32.numpy() - expected).max() <= 1e-5 * np.abs(expected).max()


def test_mixed_precision_autocast_leaves_the_loss_in_float32():
    schema = get_schema("gz2")
    concentrations, counts = (torch.tensor(x, dtype=torch.float32) for x in random_batch(schema))
    loss = DirichletMultinomialLoss(schema, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = loss(concentrations, counts)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, loss(concentrations, counts))


def test_known_value_ln_91():
    # 12!/(10! 0! 2!) * Gamma(3)/Gamma(15) * Gamma(11) Gamma(1) Gamma(3) = 1/91
    loss = DirichletMultinomialLoss(ONE_QUESTION, reduction="none")
    for dtype in (torch.float32, torch.float64):
        value = loss(torch.ones(1, 3, dtype=dtype), torch.tensor([[10.0, 0.0, 2.0]], dtype=dtype))
        assert value.item() == pytest.approx(math.log(91), rel=1e-6)
    functional = dirichlet_multinomial_nll(torch.ones(1, 3), torch.tensor([[10.0, 0.0, 2.0]]), torch.ones(3, 1))
    assert functional.item() == pytest.approx(math.log(91), rel=1e-6)


@pytest.mark.parametrize("host", [True, False], ids=["host-path", "accelerator-path"])
@pytest.mark.parametrize("whole", [True, False], ids=["vote-counts", "fractional-counts"])
def test_gradient_matches_finite_differences(whole, host):
    schema = get_schema("gz2")
    concentrations, counts = random_batch(schema, galaxies=3, whole=whole)
    conc = torch.tensor(concentrations, requires_grad=True)
    votes = torch.nan_to_num(torch.tensor(counts), nan=0.0)
    question_index = torch.from_numpy(schema.question_index).long()
    assert torch.autograd.gradcheck(
        lambda c: _DirichletMultinomialNLL.apply(c, votes, question_index, schema.n_questions, host), (conc,)
    )


@pytest.fixture
def accelerator_path(monkeypatch):
    """The loss as it runs on a GPU (no value read back to Python), here on CPU tensors."""
    monkeypatch.setattr(losses, "_on_host", lambda tensor: False)


@pytest.mark.parametrize("whole", [True, False], ids=["vote-counts", "fractional-counts"])
def test_accelerator_path_gives_the_host_paths_values_and_gradients(whole, monkeypatch):
    schema = get_schema("gz2")
    concentrations, counts = random_batch(schema, whole=whole)
    counts[4, 0] = -1.0  # a negative count: the one case that needs the no-votes mask
    results = []
    for host in (True, False):
        monkeypatch.setattr(losses, "_on_host", lambda tensor, host=host: host)
        conc = torch.tensor(concentrations, requires_grad=True)
        per_question = DirichletMultinomialLoss(schema, reduction="none")(conc, torch.tensor(counts))
        per_question.sum().backward()
        results.append((per_question.detach(), conc.grad))
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


def test_accelerator_path_reads_nothing_back():
    # meta tensors have no values: any .item(), float() or bool() on them raises, so this is a sync-free step
    schema = get_schema("gz2")
    loss = DirichletMultinomialLoss(schema).to("meta")
    conc = torch.full((4, schema.n_answers), 2.0, device="meta", requires_grad=True)
    loss(conc, torch.ones(4, schema.n_answers, device="meta")).backward()
    assert conc.grad.device.type == "meta"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0])
def test_accelerator_path_still_refuses_bad_concentrations(bad, accelerator_path):
    schema = get_schema("gz2")
    concentrations = torch.full((4, schema.n_answers), 2.0)
    concentrations[1, 5] = bad
    with pytest.raises(RuntimeError, match="concentrations must be finite and > 0"):
        DirichletMultinomialLoss(schema)(concentrations, torch.ones_like(concentrations))


def test_gradient_matches_reference_derivative():
    # d(-log p)/da_k = psi(N+A) - psi(A) + psi(a_k) - psi(n_k+a_k), written out here with scipy
    from scipy.special import digamma

    concentrations = np.array([[2.0, 3.5, 0.7]])
    counts = np.array([[4.0, 0.0, 9.0]])
    n, a = counts[0], concentrations[0]
    expected = digamma(n.sum() + a.sum()) - digamma(a.sum()) + digamma(a) - digamma(n + a)
    conc = torch.tensor(concentrations, requires_grad=True)
    DirichletMultinomialLoss(ONE_QUESTION, reduction="sum")(conc, torch.tensor(counts)).sum().backward()
    np.testing.assert_allclose(conc.grad.numpy()[0], expected, rtol=1e-12)


def test_question_without_votes_costs_exactly_zero_with_zero_gradient():
    schema = get_schema("gz_decals_dr5")
    concentrations, counts = random_batch(schema)
    for dtype in (torch.float32, torch.float64):
        conc = torch.tensor(concentrations, dtype=dtype, requires_grad=True)
        per_question = DirichletMultinomialLoss(schema, reduction="none")(conc, torch.tensor(counts, dtype=dtype))
        assert per_question[0, 1].item() == 0.0
        per_question[0, 1].backward()
        assert torch.count_nonzero(conc.grad) == 0


def test_nan_question_costs_zero_and_leaves_the_others_unchanged():
    schema = get_schema("gz2")
    concentrations, counts = random_batch(schema)
    conc = torch.tensor(concentrations, requires_grad=True)
    with_nan = DirichletMultinomialLoss(schema, reduction="none")(conc, torch.tensor(counts))
    assert with_nan[1, 2].item() == 0.0 and torch.isfinite(with_nan).all()
    with_nan.sum().backward()
    assert torch.isfinite(conc.grad).all() and torch.count_nonzero(conc.grad[1, schema.slices[2]]) == 0
    as_zero = DirichletMultinomialLoss(schema, reduction="none")(torch.tensor(concentrations), torch.tensor(np.nan_to_num(counts)))
    torch.testing.assert_close(with_nan.detach(), as_zero, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0, -1.0])
def test_bad_concentrations_raise_naming_row_and_column(bad):
    schema = get_schema("gz2")
    concentrations = torch.full((4, schema.n_answers), 2.0)
    concentrations[1, 5] = bad
    concentrations[3, 0] = bad
    with pytest.raises(ValueError, match=r"galaxy row 1, answer column 5 \(2 bad values"):
        DirichletMultinomialLoss(schema)(concentrations, torch.ones_like(concentrations))


def test_reductions_and_their_shapes():
    schema = get_schema("gz2")
    concentrations, counts = (torch.tensor(x) for x in random_batch(schema))
    per_question = DirichletMultinomialLoss(schema, reduction="none")(concentrations, counts)
    assert per_question.shape == (6, schema.n_questions)
    per_galaxy = DirichletMultinomialLoss(schema, reduction="sum")(concentrations, counts)
    torch.testing.assert_close(per_galaxy, per_question.sum(dim=1))
    mean = DirichletMultinomialLoss(schema)(concentrations, counts)
    assert mean.shape == () and mean.item() == pytest.approx(per_galaxy.mean().item())
    functional = dirichlet_multinomial_nll(concentrations, counts, torch.from_numpy(schema.answer_matrix))
    torch.testing.assert_close(functional, per_question)
    with pytest.raises(ValueError, match="reduction must be"):
        DirichletMultinomialLoss(schema, reduction="avg")


def test_empty_batch():
    schema = get_schema("gz2")
    empty = torch.zeros(0, schema.n_answers)
    assert DirichletMultinomialLoss(schema, reduction="none")(empty, empty).shape == (0, schema.n_questions)


def test_question_whose_counts_cancel_to_zero_still_costs_zero():
    # not real votes, but the rule is the total: no total, no cost and no gradient
    conc = torch.full((1, 3), 2.0, dtype=torch.float64, requires_grad=True)
    value = DirichletMultinomialLoss(ONE_QUESTION, reduction="none")(conc, torch.tensor([[1.0, -1.0, 0.0]]))
    value.sum().backward()
    assert value.item() == 0.0 and torch.count_nonzero(conc.grad) == 0
