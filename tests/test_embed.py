"""Embeddings: deterministic, resumable, PCA; cosine neighbours; anomaly scores; image grids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from galaxymorph.cli import app
from galaxymorph.representations import (
    anomaly_scores,
    embed,
    image_grid,
    read_embeddings,
    similar,
)


def test_same_image_same_embedding_across_runs(untrained_run, twelve_galaxies, tmp_path):
    first = embed(untrained_run, tmp_path / "a.parquet", catalogue=twelve_galaxies, progress=False)
    embed(untrained_run, tmp_path / "b.parquet", catalogue=twelve_galaxies, batch_size=5, progress=False)
    assert first == {"rows": 12, "new": 12, "errors": 0, "parts": 1}
    frame_a, a, meta = read_embeddings(tmp_path / "a.parquet")
    frame_b, b, _ = read_embeddings(tmp_path / "b.parquet")
    assert a.shape == (12, meta["n_features"]) and a.dtype == np.float32
    order = frame_b.set_index("id_str").index.get_indexer(frame_a["id_str"])
    np.testing.assert_array_equal(a, b[order])
    rows = frame_a.set_index("id_str").index.get_indexer(["g0", "g11"])
    np.testing.assert_array_equal(a[rows[0]], a[rows[1]])


def test_resume_embeds_only_new_galaxies(untrained_run, twelve_galaxies, tmp_path):
    half = pd.read_csv(twelve_galaxies).head(5)
    half.to_csv(twelve_galaxies.parent / "half.csv", index=False)
    out = tmp_path / "e.parquet"
    assert embed(untrained_run, out, catalogue=twelve_galaxies.parent / "half.csv", progress=False)["new"] == 5
    counts = embed(untrained_run, out, catalogue=twelve_galaxies, progress=False)
    assert counts == {"rows": 12, "new": 7, "errors": 0, "parts": 1}
    assert sorted(read_embeddings(out)[0]["id_str"]) == sorted(f"g{i}" for i in range(12))


def test_pca_keeps_k_components_and_the_full_features(untrained_run, twelve_galaxies, tmp_path):
    out = tmp_path / "pca.parquet"
    embed(untrained_run, out, catalogue=twelve_galaxies, pca=3, progress=False)
    frame, vectors, meta = read_embeddings(out)
    assert vectors.shape == (12, 3) and meta["pca"]["components"] == 3
    ratios = meta["pca"]["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and 0 < sum(ratios) <= 1 + 1e-6
    full = read_embeddings(tmp_path / "pca.features.parquet")[1]
    assert full.shape == (12, 96)  # test_resnet's pooled features
    centred = full - full.mean(axis=0)  # the components are the projections on the top principal axes
    top = np.linalg.svd(centred, full_matrices=False)[2][:3]
    np.testing.assert_allclose(np.abs(vectors), np.abs(centred @ top.T), atol=1e-3)


def test_every_galaxy_is_its_own_nearest_neighbour():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(30, 8)).astype(np.float32)
    frame = pd.DataFrame({"id_str": [f"g{i}" for i in range(30)]})
    for i in range(30):
        found = similar(frame, vectors, f"g{i}", k=4)
        assert found["id_str"].iloc[0] == f"g{i}" and found["similarity"].iloc[0] == pytest.approx(1.0)
        assert list(found["rank"]) == [0, 1, 2, 3] and found["similarity"].is_monotonic_decreasing
    scaled = np.vstack([vectors, 5 * vectors[:1]])  # same direction: cosine similarity 1
    frame = pd.DataFrame({"id_str": [f"g{i}" for i in range(31)]})
    assert similar(frame, scaled, "g0", k=2)["id_str"].tolist() == ["g0", "g30"]
    with pytest.raises(KeyError, match="'nope'"):
        similar(frame, scaled, "nope")


@pytest.mark.parametrize("method", ["knn", "isolation-forest"])
def test_a_planted_outlier_is_the_most_anomalous(method):
    rng = np.random.default_rng(0)
    centre = rng.normal(size=16)
    vectors = centre + 0.05 * rng.normal(size=(60, 16))
    vectors[17] = -centre + rng.normal(size=16)
    assert int(np.argmax(anomaly_scores(vectors, method, k=5))) == 17


def test_cli_similar_and_anomalies_draw_grids(untrained_run, twelve_galaxies, tmp_path):
    out = tmp_path / "cli.parquet"
    runner = CliRunner()
    result = runner.invoke(app, ["embed", "--checkpoint", str(untrained_run), "--out", str(out),
                                 "--catalog", str(twelve_galaxies)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["similar", "--embeddings", str(out), "--query", "g3", "--k", "4",
                                 "--grid", str(tmp_path / "similar.png")])
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[1].split()[:2] == ["0", "g3"]
    result = runner.invoke(app, ["anomalies", "--embeddings", str(out), "--top", "3", "--k", "3",
                                 "--grid", str(tmp_path / "odd.png"), "--out", str(tmp_path / "scores.csv")])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "scores.csv")) == 12
    for png in ("similar.png", "odd.png"):
        assert Image.open(tmp_path / png).size[0] > 100
    result = runner.invoke(app, ["similar", "--embeddings", str(out), "--query", "missing"])
    assert result.exit_code == 2 and "missing" in result.output


def test_anomalies_take_the_image_files_from_a_given_catalogue(untrained_run, twelve_galaxies, tmp_path):
    """Embeddings of shards carry no file_loc; --catalog names each galaxy's image for the CSV and the grid."""
    out = tmp_path / "e.parquet"
    assert CliRunner().invoke(app, ["embed", "--checkpoint", str(untrained_run), "--out", str(out), "--catalog",
                                    str(twelve_galaxies)]).exit_code == 0
    other = tmp_path / "other.csv"
    pd.DataFrame({"id_str": ["g1", "g2"], "file_loc": ["elsewhere/g1.png", "elsewhere/g2.png"]}).to_csv(other, index=False)
    result = CliRunner().invoke(app, ["anomalies", "--embeddings", str(out), "--out", str(tmp_path / "s.csv"),
                                      "--catalog", str(other)])
    assert result.exit_code == 0, result.output
    files = pd.read_csv(tmp_path / "s.csv").set_index("id_str")["file_loc"]
    assert files["g1"] == str(tmp_path / "elsewhere" / "g1.png") and files.drop(["g1", "g2"]).isna().all()


def test_grid_marks_missing_images_and_warns_how_many(tmp_path):
    from galaxymorph.data.images import MissingImagesWarning

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "found.png")
    expected = rf"^2 of 3 galaxies' images not found \(e.g. {tmp_path}/absent.png\)"
    with pytest.warns(MissingImagesWarning, match=expected):
        path = image_grid([None, str(tmp_path / "absent.png"), str(tmp_path / "found.png")], ["a", "b", "c"],
                          tmp_path / "grid.png")
    assert Image.open(path).size[0] > 100


def test_embeddings_made_from_a_relative_catalogue_find_their_images_from_another_folder(untrained_run, twelve_galaxies,
                                                                                         tmp_path, monkeypatch):
    """similar/anomalies --grid run elsewhere drew "file not found" tiles: file_loc was relative to the first folder."""
    monkeypatch.chdir(twelve_galaxies.parent.parent)
    relative = f"{twelve_galaxies.parent.name}/{twelve_galaxies.name}"
    assert CliRunner().invoke(app, ["embed", "--checkpoint", str(untrained_run), "--out", str(tmp_path / "e.parquet"),
                                    "--catalog", relative]).exit_code == 0
    monkeypatch.chdir(tmp_path)
    frame, _, _ = read_embeddings("e.parquet")
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in frame["file_loc"])
    result = CliRunner().invoke(app, ["similar", "--embeddings", "e.parquet", "--query", "g3", "--k", "3",
                                      "--grid", "similar.png"])
    assert result.exit_code == 0 and "warning" not in result.output, result.output


def test_real_gz2_galaxies_are_their_own_nearest_neighbours(gz2_dir, untrained_run, tmp_path):
    images = sorted((gz2_dir / "images").glob("*.jpg"))[:16]
    pd.DataFrame({"id_str": [p.stem for p in images], "file_loc": [str(p) for p in images]}).to_csv(
        tmp_path / "real.csv", index=False
    )
    assert embed(untrained_run, tmp_path / "real.parquet", catalogue=tmp_path / "real.csv", progress=False)["rows"] == 16
    frame, vectors, _ = read_embeddings(tmp_path / "real.parquet")
    for galaxy in frame["id_str"]:
        assert similar(frame, vectors, galaxy, k=2)["id_str"].iloc[0] == galaxy


def _embedding_file(path, vectors):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from galaxymorph.representations.embed import embedding_layout

    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).reshape(-1)), vectors.shape[1])
    ids = [f"g{i}" for i in range(len(vectors))]
    pq.write_table(pa.table({"id_str": ids, "file_loc": [None] * len(ids), "embedding": column},
                            schema=embedding_layout(vectors.shape[1], {})), path)
    return path


def _clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(20, 16))[rng.integers(0, 20, n)] + 0.3 * rng.normal(size=(n, 16))).astype(np.float32)


def test_the_hnsw_index_finds_what_exact_search_finds():
    from galaxymorph.representations import NeighbourIndex

    vectors = _clustered(2000)
    exact, approximate = NeighbourIndex.build(vectors, approximate=False), NeighbourIndex.build(vectors, approximate=True)
    assert exact.exact and not approximate.exact
    similarity, rows = exact.search(vectors[:200], 10)
    found_similarity, found = approximate.search(vectors[:200], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows, found)])
    assert recall > 0.95
    np.testing.assert_allclose(found_similarity[:, 0], similarity[:, 0], atol=1e-5)  # the galaxy itself, 1
    frame = pd.DataFrame({"id_str": [f"g{i}" for i in range(2000)]})
    assert similar(frame, vectors, "g5", 6, approximate)["id_str"].iloc[0] == "g5"
    scores = anomaly_scores(vectors, k=5, index=approximate)
    np.testing.assert_allclose(scores, anomaly_scores(vectors, k=5, index=exact), atol=0.05)


def test_the_saved_index_is_reused_rebuilt_when_the_embeddings_change_and_never_overwrites_a_stranger(tmp_path):
    from galaxymorph.outputs import OutputInUse
    from galaxymorph.representations import neighbour_index

    path = _embedding_file(tmp_path / "emb.parquet", _clustered(500))
    saved = tmp_path / "emb.parquet.hnsw.faiss"
    vectors = read_embeddings(path)[1]
    assert neighbour_index(path, vectors).exact and not saved.exists()  # small: exact search, nothing written
    assert not neighbour_index(path, vectors, approximate=True).exact and saved.is_file()
    written = saved.stat().st_mtime_ns
    neighbour_index(path, vectors, approximate=True)
    assert saved.stat().st_mtime_ns == written  # loaded, not rebuilt
    _embedding_file(path, _clustered(600, seed=1))  # new embeddings: the index must follow
    vectors = read_embeddings(path)[1]
    index = neighbour_index(path, vectors, approximate=True)
    assert index.hnsw.ntotal == 600 and index.search(vectors[599:], 1)[1][0, 0] == 599
    other = _embedding_file(tmp_path / "other.parquet", _clustered(50))
    (tmp_path / "other.parquet.hnsw.faiss").write_text("someone else's file")
    with pytest.raises(OutputInUse, match="not written by galaxymorph"):
        neighbour_index(other, read_embeddings(other)[1], approximate=True)
    assert (tmp_path / "other.parquet.hnsw.faiss").read_text() == "someone else's file"


def test_cli_uses_the_index_from_its_size_on(tmp_path, monkeypatch):
    import galaxymorph.representations.index as index_module

    path = _embedding_file(tmp_path / "emb.parquet", _clustered(300))
    runner = CliRunner()
    assert runner.invoke(app, ["similar", "--embeddings", str(path), "--query", "g3"]).exit_code == 0
    assert not (tmp_path / "emb.parquet.hnsw.faiss").exists()
    monkeypatch.setattr(index_module, "EXACT_BELOW", 100)
    result = runner.invoke(app, ["similar", "--embeddings", str(path), "--query", "g3"])
    assert result.exit_code == 0 and result.output.split("\n")[1].split()[:2] == ["0", "g3"]
    assert (tmp_path / "emb.parquet.hnsw.faiss").is_file()
    result = runner.invoke(app, ["anomalies", "--embeddings", str(path), "--out", str(tmp_path / "scores.csv")])
    assert result.exit_code == 0 and len(pd.read_csv(tmp_path / "scores.csv")) == 300
