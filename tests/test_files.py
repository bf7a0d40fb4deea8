"""Files written whole or not at all (galaxymorph.files.atomic_path)."""

import pytest

from galaxymorph.files import atomic_path, atomic_write_text


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    target = tmp_path / "table.csv"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the n")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
    with atomic_path(target) as tmp:
        assert tmp.name == "table.csv.tmp" and tmp.parent == tmp_path  # beside it: the rename is atomic
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
