"""``galaxymorph fetch`` against a made-up Zenodo on 127.0.0.1 (tests/fake_zenodo.py): downloads that resume,
verify and refuse, archives unpacked once, GZD-5's votes made a catalogue. No traffic leaves this machine."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_zenodo import FakeZenodo
from PIL import Image
from typer.testing import CliRunner

from galaxymorph.archive import FetchError, Offline, Retry, fetch, gz_decals_catalogue
from galaxymorph.archive.zenodo import parse_record
from galaxymorph.cli import app
from galaxymorph.data.catalogue import read_catalogue, vote_columns
from galaxymorph.schema import get_schema

GALAXIES = ["J100620.35+101629.1", "J134211.81+004924.8", "J092340.76+315919.6"]
DATA = os.urandom(300_000)  # a made-up data file, big enough to be cut mid-way


class Waits(list):
    """A ``Retry.sleep`` that records the waits instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _retry(attempts: int = 4) -> tuple[Retry, Waits]:
    waits = Waits()
    return Retry(attempts=attempts, timeout=10, sleep=waits), waits


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def _volunteer_table(campaign: str = "") -> pd.DataFrame:
    """GZD-5's table for GALAXIES: counts named ``question{campaign}_answer``, with fractions and totals beside."""
    answers = vote_columns(get_schema("gz_decals_dr5"))
    counts = np.arange(len(GALAXIES) * len(answers)).reshape(len(GALAXIES), len(answers)) % 7
    table = pd.DataFrame(counts, columns=[a.replace("_", f"{campaign}_", 1) for a in answers])
    table.insert(0, "iauname", GALAXIES)
    table["smooth-or-featured_total-votes"] = counts[:, :3].sum(axis=1)
    table["smooth-or-featured_smooth_fraction"] = counts[:, 0] / counts[:, :3].sum(axis=1)
    return table


def _gz_decals_record(zenodo: FakeZenodo, record_id: int = 4196267) -> None:
    """The release's shape: the GZD-5 table, an image archive (one galaxy's image missing), files not needed."""
    images = {f"dr5/{name[:4]}/{name}.png": _png() for name in GALAXIES[:2]}
    images["__MACOSX/dr5/._J100620.35+101629.1.png"] = b"mac metadata"
    zenodo.add(record_id, {
        "gz_decals_volunteers_5.csv": _volunteer_table().to_csv(index=False).encode(),
        "gz_decals_dr5_png_part1.zip": _zip(images),
        "gz_decals_auto_posteriors.csv": b"not needed for training",
    })


def test_gz_decals_release_becomes_a_catalogue_that_shard_reads_with_missing_images_listed(tmp_path):
    out = tmp_path / "gzd5"
    with FakeZenodo() as zenodo:
        _gz_decals_record(zenodo)
        fetched = fetch("gz_decals_dr5", out, server=zenodo.url, progress=False, retry=_retry()[0])
    assert sorted(p.name for p in fetched.files) == ["gz_decals_dr5_png_part1.zip", "gz_decals_volunteers_5.csv"]
    assert not (out / "gz_decals_auto_posteriors.csv").exists()
    assert (out / "gz_decals_dr5_png_part1" / "dr5" / "J134" / "J134211.81+004924.8.png").is_file()
    assert not (out / "gz_decals_dr5_png_part1" / "__MACOSX").exists()
    catalogue = read_catalogue(fetched.catalogue_path, "gz_decals_dr5")  # as shard reads it, images checked
    assert list(catalogue["id_str"]) == GALAXIES[:2]
    table = _volunteer_table()
    votes = vote_columns(get_schema("gz_decals_dr5"))
    assert np.array_equal(catalogue[votes].to_numpy(), table[votes].to_numpy()[:2].astype(np.float32))
    saved = pd.read_parquet(fetched.catalogue_path)
    assert saved["file_loc"][0] == "gz_decals_dr5_png_part1/dr5/J100/J100620.35+101629.1.png"  # relative: portable
    missing = pd.read_csv(out / "catalogue.missing_images.csv")
    assert list(missing["id_str"]) == [GALAXIES[2]] and fetched.catalogue.attrs["missing_images"] == 1


def test_a_second_run_downloads_and_unpacks_nothing_again(tmp_path):
    with FakeZenodo() as zenodo:
        _gz_decals_record(zenodo)
        fetch("gz_decals_dr5", tmp_path, server=zenodo.url, progress=False, retry=_retry()[0])
        before = len(zenodo.requests)
        unpacked = tmp_path / "gz_decals_dr5_png_part1" / "dr5" / "J100" / "J100620.35+101629.1.png"
        stamp = unpacked.stat().st_mtime_ns
        fetch("gz_decals_dr5", tmp_path, server=zenodo.url, progress=False, retry=_retry()[0])
        assert [path for path, _ in zenodo.requests[before:]] == ["/api/records/4196267"]  # the file list only
    assert unpacked.stat().st_mtime_ns == stamp


def test_galaxy_datasets_column_spelling_is_read_too(tmp_path):
    (tmp_path / "images" / "J100").mkdir(parents=True)
    (tmp_path / "images" / "J100" / f"{GALAXIES[0]}.jpg").write_bytes(b"")
    _volunteer_table(campaign="-dr5").to_parquet(tmp_path / "ortho.parquet")
    catalogue = gz_decals_catalogue(tmp_path / "ortho.parquet", tmp_path / "images", tmp_path / "cat.parquet")
    assert list(catalogue["id_str"]) == GALAXIES[:1]
    assert catalogue["smooth-or-featured_artifact"][0] == _volunteer_table()["smooth-or-featured_artifact"][0]


def test_a_table_that_is_not_gzd5s_is_refused_naming_the_column(tmp_path):
    _volunteer_table().drop(columns=["bar_weak"]).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="no column 'bar_weak' \\(nor 'bar-dr5_weak'\\)"):
        gz_decals_catalogue(tmp_path / "t.csv", tmp_path, tmp_path / "cat.parquet")


def test_a_file_cut_mid_way_is_resumed_with_a_range_request(tmp_path):
    retry, waits = _retry()
    with FakeZenodo() as zenodo:
        zenodo.add(7, {"data.bin": DATA})
        zenodo.faults["data.bin"].extend(["close:100000", "close:50000"])
        fetch(None, tmp_path, record=7, server=zenodo.url, progress=False, retry=retry)
        assert zenodo.file_requests("data.bin") == [None, "bytes=100000-", "bytes=150000-"]
        assert zenodo.sent["data.bin"] == len(DATA)  # no byte sent twice
    assert (tmp_path / "data.bin").read_bytes() == DATA and not (tmp_path / "data.bin.part").exists()
    assert waits == [2.0, 2.0]  # each drop gained bytes, so none counts towards giving up


def test_killed_mid_file_the_next_run_asks_only_for_the_rest(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    part = tmp_path / "data.bin.part"
    with FakeZenodo() as zenodo:
        zenodo.add(8, {"data.bin": DATA})
        zenodo.faults["data.bin"].append("hold:120000")
        command = [sys.executable, "-c", "from galaxymorph.cli import app; app()", "fetch", "--record", "8", "--out", str(tmp_path),
                   "--server", zenodo.url]
        child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(300):  # until the held bytes are on disk (at most 30 s)
                if part.is_file() and part.stat().st_size == 120_000:
                    break
                time.sleep(0.1)
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        finally:
            zenodo.release_held()
        assert part.stat().st_size == 120_000
        fetch(None, tmp_path, record=8, server=zenodo.url, progress=False, retry=_retry()[0])
        assert zenodo.file_requests("data.bin") == [None, "bytes=120000-"]
        assert zenodo.sent["data.bin"] == len(DATA)
    assert hashlib.md5((tmp_path / "data.bin").read_bytes()).hexdigest() == hashlib.md5(DATA).hexdigest()


def test_429_waits_as_long_as_retry_after_says(tmp_path, monkeypatch):
    retry, waits = _retry()
    with FakeZenodo() as zenodo:
        zenodo.add(9, {"data.bin": DATA})
        zenodo.faults["data.bin"].extend(["429:7", "503"])
        monkeypatch.setenv("GALAXYMORPH_ZENODO_URL", zenodo.url)  # the address from the environment
        fetch(None, tmp_path, record=9, progress=False, retry=retry)
    assert waits == [7.0, 4.0]  # Retry-After, then the doubling wait of a 503 without one
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_a_corrupt_download_is_fetched_again_and_never_used(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(10, {"data.bin": DATA})
        zenodo.faults["data.bin"].append("corrupt")
        fetch(None, tmp_path, record=10, server=zenodo.url, progress=False, retry=_retry()[0])
        assert zenodo.file_requests("data.bin") == [None, None]
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_a_checksum_that_never_matches_is_refused_naming_both(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(11, {"data.bin": DATA}, listed_md5={"data.bin": "0" * 32})
        with pytest.raises(FetchError, match=f"data.bin: md5 {hashlib.md5(DATA).hexdigest()} after downloading "
                                             f"twice, the record lists {'0' * 32}"):
            fetch(None, tmp_path, record=11, server=zenodo.url, progress=False, retry=_retry()[0])
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_a_server_that_ignores_the_range_restarts_the_part(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(12, {"data.bin": DATA})
        zenodo.faults["data.bin"].extend(["close:1000", "whole"])
        fetch(None, tmp_path, record=12, server=zenodo.url, progress=False, retry=_retry()[0])
    assert (tmp_path / "data.bin").read_bytes() == DATA


def test_404s_name_the_file_or_the_record(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(13, {"data.bin": DATA})
        zenodo.faults["data.bin"].append("404")
        with pytest.raises(FetchError, match=r"/api/records/13/files/data.bin/content: HTTP 404"):
            fetch(None, tmp_path / "a", record=13, server=zenodo.url, progress=False, retry=_retry()[0])
        with pytest.raises(FetchError, match=f"{zenodo.url} has no record 14"):
            fetch(None, tmp_path / "b", record=14, server=zenodo.url, progress=False, retry=_retry()[0])


def test_too_little_disk_space_is_refused_before_any_download(tmp_path, monkeypatch):
    import galaxymorph.archive.download as download

    class Disk:
        free = 1000

    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: Disk)  # a nearly full disk, simulated
    with FakeZenodo() as zenodo:
        zenodo.add(15, {"data.bin": DATA})
        with pytest.raises(FetchError, match=r"1.0 kB free, record 15's 1 file\(s\) needs 300.0 kB more"):
            fetch(None, tmp_path, record=15, server=zenodo.url, progress=False, retry=_retry()[0])
        assert zenodo.file_requests("data.bin") == []


def _closed_port_url() -> str:
    """The address of a server that just stopped: what an unreachable archive looks like, without leaving 127.0.0.1."""
    with FakeZenodo() as zenodo:
        return zenodo.url


def test_offline_says_in_one_line_what_to_download_and_where(tmp_path):
    url = _closed_port_url()
    with pytest.raises(Offline) as caught:
        fetch(None, tmp_path, record=16, server=url, progress=False, retry=_retry()[0])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"cannot reach {url}")
    assert f"save {url}/api/records/16 as {tmp_path / 'record.json'}" in message
    assert f"files it lists ({url}/records/16) into {tmp_path}" in message


def test_offline_with_the_record_saved_names_the_files_still_missing(tmp_path):
    with FakeZenodo() as zenodo:  # record.json as a person would save it from Zenodo
        zenodo.add(17, {"a.bin": DATA[:10], "b.bin": DATA[10:30]})
        (tmp_path / "record.json").write_text(json.dumps(zenodo.record_json(17)))
        (tmp_path / "a.bin").write_bytes(DATA[:10])  # and one file downloaded by hand
        url = zenodo.url
    with pytest.raises(Offline, match=f"download b.bin from {url}/records/17 into {tmp_path}, then run this again"):
        fetch(None, tmp_path, record=17, server=url, progress=False, retry=_retry()[0])


def test_a_mirror_serving_zenodos_json_as_is_serves_the_files_too(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(18, {"data.bin": DATA})
        zenodo.link_host = "https://zenodo.org"
        fetch(None, tmp_path, record=18, server=zenodo.url, progress=False, retry=_retry()[0])
        assert zenodo.file_requests("data.bin") == [None]  # asked of the mirror, not of zenodo.org


def test_the_api_after_zenodos_2023_move_is_read_too():
    data = {"id": 5, "files": [{"filename": "x.csv", "filesize": 3, "checksum": "a" * 32}]}
    (file,) = parse_record(data, 5, "http://mirror/zenodo").files
    assert (file.key, file.size, file.md5) == ("x.csv", 3, "a" * 32)
    assert file.url == "http://mirror/zenodo/records/5/files/x.csv?download=1"


def test_invenio_rdms_own_json_nests_the_files():
    data = {"id": 6, "files": {"entries": {"y.csv": {"key": "y.csv", "size": 4, "checksum": "md5:" + "b" * 32,
                                                     "links": {"content": "/api/records/6/files/y.csv/content"}}}}}
    (file,) = parse_record(data, 6, "http://127.0.0.1:8").files
    assert (file.key, file.url) == ("y.csv", "http://127.0.0.1:8/api/records/6/files/y.csv/content")


def test_a_file_put_there_by_someone_else_is_used_if_right_and_never_overwritten_if_not(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(19, {"a.bin": DATA[:10], "b.bin": DATA[10:30]})
        (tmp_path / "a.bin").write_bytes(DATA[:10])  # the record's bytes: used as is
        (tmp_path / "b.bin").write_bytes(b"my notes")  # not the record's: refused, kept
        with pytest.raises(FetchError, match=r"b.bin is not record 19's b.bin .*move it away"):
            fetch(None, tmp_path, record=19, server=zenodo.url, progress=False, retry=_retry()[0])
        assert zenodo.file_requests("a.bin") == [] and (tmp_path / "b.bin").read_bytes() == b"my notes"


def test_an_archive_member_that_would_leave_its_folder_is_refused(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(20, {"evil.zip": _zip({"../outside.txt": b"x"})})
        with pytest.raises(FetchError, match="member '../outside.txt' would land outside its folder"):
            fetch(None, tmp_path / "f", record=20, server=zenodo.url, progress=False, retry=_retry()[0])
    assert not (tmp_path / "outside.txt").exists()


def test_the_command_fetches_and_refuses_in_one_line(tmp_path):
    with FakeZenodo() as zenodo:
        _gz_decals_record(zenodo)
        args = ["fetch", "gz_decals_dr5", "--out", str(tmp_path / "gzd5"), "--server", zenodo.url]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "2 galaxies; 1 without an image are listed in" in " ".join(result.output.split())
        other = CliRunner().invoke(app, ["fetch", "--record", "4196267", "--out", str(tmp_path / "gzd5"),
                                         "--server", zenodo.url, "--files", "*.csv"])
    # another selection of the same record into the same folder is fine; the record's auto table now joins it
    assert other.exit_code == 0, other.output
    with FakeZenodo() as zenodo:
        zenodo.add(21, {"x.bin": b"x"})
        refused = CliRunner().invoke(app, ["fetch", "--record", "21", "--out", str(tmp_path / "gzd5"),
                                           "--server", zenodo.url])
    assert refused.exit_code == 2 and "holds record 4196267, not 21" in " ".join(refused.output.split())


def test_unpacking_again_writes_only_the_files_not_yet_whole(tmp_path):
    from galaxymorph.archive.unpack import unpack

    archive = tmp_path / "images.zip"
    archive.write_bytes(_zip({f"a/{i}.png": bytes([i]) * (100 + i) for i in range(4)}))
    assert unpack(archive, tmp_path / "images") == 4
    (tmp_path / "images" / "a" / "2.png").unlink()  # as if killed while writing it: its .part left behind
    (tmp_path / "images" / "a" / "2.png.part").write_bytes(b"half")
    stamp = (tmp_path / "images" / "a" / "0.png").stat().st_mtime_ns
    assert unpack(archive, tmp_path / "images") == 1
    assert (tmp_path / "images" / "a" / "2.png").read_bytes() == bytes([2]) * 102
    assert (tmp_path / "images" / "a" / "0.png").stat().st_mtime_ns == stamp
    (tmp_path / "images" / "a" / "3.png").write_bytes(b"someone else's")
    with pytest.raises(FetchError, match="3.png exists and is not images.zip's a/3.png; move it away"):
        unpack(archive, tmp_path / "images")


def test_gz2_fetches_the_images_and_mapping_and_says_where_the_votes_are(tmp_path):
    with FakeZenodo() as zenodo:
        zenodo.add(3565489, {"images_gz2.zip": _zip({"images/12.jpg": b"jpeg"}), "gz2_filename_mapping.csv":
                             b"objid,sample,asset_id\n587722981741363294,original,12\n", "README.txt": b"x"})
        fetched = fetch("gz2", tmp_path, server=zenodo.url, progress=False, retry=_retry()[0])
    assert sorted(p.name for p in fetched.files) == ["gz2_filename_mapping.csv", "images_gz2.zip"]
    assert (tmp_path / "images_gz2" / "images" / "12.jpg").read_bytes() == b"jpeg"
    assert fetched.catalogue is None and "gz2_hart16.csv.gz" in fetched.note
