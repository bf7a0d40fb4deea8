"""``predict --tta``: the 8 rotation/flip views as further posterior samples, recorded so a resume cannot mix them."""

import functools

import numpy as np
import pytest
import torch
from support import TINY, TinyModel, pixel_records
from torch import nn

from galaxymorph.data.transforms import dihedral_views
from galaxymorph.prediction import predict_records, read_concentrations, read_predictions
from galaxymorph.prediction.mc_dropout import posterior_samples


class OrientationFreeModel(TinyModel):
    """Per-pixel features averaged over the image: the same output however the galaxy is turned or mirrored."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_the_eight_views_are_the_eight_symmetries_of_the_square():
    image = torch.arange(4.0).reshape(1, 1, 2, 2)
    views = dihedral_views(image)
    assert views.shape == (8, 1, 1, 2, 2)
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8  # 8 distinct arrangements: all of them
    torch.testing.assert_close(views[0], image)  # the first view is the galaxy as it is


def test_each_views_samples_are_that_views_encoder_and_head():
    model = TinyModel().eval()
    images = torch.rand(3, 3, 4, 4)
    together = posterior_samples(model, images, samples=1, tta=True)
    assert together.shape == (3, TINY.n_answers, 8)
    for v, view in enumerate(dihedral_views(images)):
        torch.testing.assert_close(together[..., v], model.sample(model.features(view), 1)[..., 0])
    assert not torch.allclose(together[..., 0], together[..., 1])  # this model does see orientation


def test_an_orientation_free_model_gives_the_same_sample_in_every_view(tmp_path):
    out = tmp_path / "p.parquet"
    predict_records(OrientationFreeModel(), functools.partial(pixel_records, 6), out, samples=1, progress=False, tta=True)
    conc = read_concentrations(read_predictions(out)[0], TINY)
    assert conc.shape == (6, TINY.n_answers, 8)
    np.testing.assert_allclose(conc, np.repeat(conc[..., :1], 8, axis=2), rtol=1e-5)


def test_tta_gives_eight_times_the_samples_from_one_encoder_pass_per_batch(tmp_path):
    model = TinyModel()
    out = tmp_path / "p.parquet"
    predict_records(model, functools.partial(pixel_records, 10), out, samples=5, batch_size=5, progress=False, tta=True)
    frame, _, meta = read_predictions(out)
    assert meta["samples"] == 40 and meta["made_by"]["tta"] is True
    assert read_concentrations(frame, TINY).shape == (10, TINY.n_answers, 40)
    assert model.feature_calls == 2


@pytest.mark.parametrize("first, then", [(True, False), (False, True)])
def test_resuming_with_or_without_tta_is_refused(tmp_path, first, then):
    out = tmp_path / "p.parquet"
    predict_records(TinyModel(), functools.partial(pixel_records, 4), out, samples=2, progress=False, tta=first)
    with pytest.raises(ValueError, match=f"made with tta={first!r}.*not tta={then!r}"):
        predict_records(TinyModel(), functools.partial(pixel_records, 4), out, samples=2, progress=False, tta=then)
