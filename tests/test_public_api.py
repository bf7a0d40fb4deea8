"""The top-level API: the verbs a user calls, one import away, without loading torch until one is used."""

import subprocess
import sys

import pytest

import galaxymorph


def test_every_public_name_resolves_to_the_subpackages_own_object():
    from galaxymorph.prediction import predict
    from galaxymorph.training import TrainConfig

    assert galaxymorph.__all__ == sorted(galaxymorph.__all__)
    for name in galaxymorph.__all__:
        assert getattr(galaxymorph, name).__name__ == name
    assert galaxymorph.predict is predict and galaxymorph.TrainConfig is TrainConfig
    assert {"train", "finetune", "predict", "embed", "evaluate", "fetch", "RunSettings"} <= set(dir(galaxymorph))


def test_importing_a_subpackage_leaves_the_verb_of_its_name_a_function():
    """A subpackage named as a verb (``galaxymorph.predict``) would replace the verb once imported."""
    code = ("import galaxymorph.prediction, galaxymorph.evaluation, galaxymorph.training, galaxymorph as gm; "
            "print(all(callable(getattr(gm, n)) and not isinstance(getattr(gm, n), type(gm)) for n in gm.__all__))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "True"


def test_importing_the_package_loads_no_torch():
    code = "import galaxymorph, sys; galaxymorph.get_schema('gz2'); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_verb"):
        galaxymorph.no_such_verb  # noqa: B018
