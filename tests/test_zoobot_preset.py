"""The ``zoobot`` preprocessing gives the encoder the very pixels zoobot 2.9 gives it.

tests/data/zoobot_view/ holds two small simulated galaxies (a JPEG and a PNG) and what
zoobot 2.9 with galaxy-datasets 0.0.25 made of them (``minimal_view_config`` at 24 px, colour
and greyscale), written by ``python -m benchmarks zoobot_parity --write-reference``; no zoobot
is needed here. The same script measured the features of 100 real GZ2 images through both
tools (BENCHMARKS.md, zoobot parity).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from galaxymorph.data.images import load_image
from galaxymorph.data.transforms import PRESETS, Preprocessing, eval_transform, preset_preprocessing

REFERENCE = Path(__file__).parent / "data" / "zoobot_view"
SIZE = 24


@pytest.mark.parametrize("name", ["galaxy0.jpg", "galaxy1.png"])
@pytest.mark.parametrize("channels", [3, 1], ids=["rgb", "grey"])
def test_the_zoobot_preset_reproduces_zoobots_view_pixel_for_pixel(name, channels):
    expected = np.load(REFERENCE / "zoobot_views.npz")[f"{name.replace('.', '_')}_{'rgb' if channels == 3 else 'grey'}"]
    prep = preset_preprocessing("zoobot", SIZE, channels)
    stored = prep.read(REFERENCE / name)
    np.testing.assert_array_equal(stored, expected)
    model_input = eval_transform(prep)(torch.from_numpy(stored).permute(2, 0, 1)[None])[0]
    zoobot_input = torch.from_numpy(expected).permute(2, 0, 1).float() / 255  # galaxy-datasets' ToDtype(scale=True)
    torch.testing.assert_close(model_input, zoobot_input, rtol=0, atol=1e-7)  # no further crop, resize or rounding


def test_galaxymorphs_own_reader_is_another_view():
    """So the test above would notice a preset that fell back to the default reader."""
    zoobot = preset_preprocessing("zoobot", SIZE)
    default = load_image(REFERENCE / "galaxy0.jpg", SIZE, 3, zoobot.source_crop)
    assert not np.array_equal(default, zoobot.read(REFERENCE / "galaxy0.jpg"))


def test_presets_are_plain_data_and_older_settings_still_read():
    for name in PRESETS:
        prep = preset_preprocessing(name)
        assert Preprocessing.from_dict(prep.to_dict()) == prep
    assert preset_preprocessing("zoobot").image_size == 224 and preset_preprocessing("galaxymorph").image_size == 64
    zoobot = preset_preprocessing("zoobot", 64)
    assert (zoobot.stored_size, zoobot.eval_zoom, zoobot.source_crop) == (64, 1.0, pytest.approx(1 / 1.2))
    assert zoobot.train_zoom == pytest.approx((1.2 / 1.4, 1.0))  # zoobot's training zoom, 1.2-1.4x of the frame
    old = {k: v for k, v in Preprocessing().to_dict().items() if k != "reader"}  # a manifest from before readers
    assert Preprocessing.from_dict(old).reader == "galaxymorph"


def test_preset_settings_that_cannot_hold_are_refused():
    with pytest.raises(ValueError, match="unknown preprocessing 'zoobot2'; choose one of galaxymorph, zoobot"):
        preset_preprocessing("zoobot2")
    with pytest.raises(ValueError, match="source_crop=0.5 with the zoobot preprocessing"):
        preset_preprocessing("zoobot", source_crop=0.5)
    with pytest.raises(ValueError, match="reader='pil' must be one of"):
        Preprocessing(reader="pil")
