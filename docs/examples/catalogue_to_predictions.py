# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # From a Galaxy Zoo catalogue to posterior vote fractions
#
# A Galaxy Zoo catalogue is a table with `id_str`, `file_loc` (the image) and one
# vote-count column per answer of a decision tree. This notebook takes one through
# the whole way: decode the images once into shards, train a Bayesian CNN on the
# votes, predict the held-out galaxies with MC dropout, and plot the posteriors.
#
# With `GZ2_KAGGLE = None` it simulates the galaxies and their volunteers, so it runs
# with no download. Set it to a folder of the Kaggle GZ2 data (`labels.csv` and
# `images/`) to use real GZ2 galaxies instead. At the default sizes it takes a
# few minutes on a laptop CPU.

# %% tags=["parameters"]
GZ2_KAGGLE = None  # e.g. "../shared/data/gz2_kaggle"; None: simulated galaxies
GALAXIES = 2000
IMAGE_PX = 64  # pixels stored in the shards
MODEL_PX = 48  # model input, after the zoom-crop
ARCH = "resnet10t"  # any timm architecture
EPOCHS = 8
WORK = "example_output"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from galaxymorph import get_schema
from galaxymorph.data.images import load_image
from galaxymorph.data.kaggle_gz2 import kaggle_to_catalogue
from galaxymorph.data.shards import write_shards
from galaxymorph.data.transforms import Preprocessing
from galaxymorph.training import TrainConfig, train
from galaxymorph.prediction import predict, read_predictions
from galaxymorph.simulate import simulate_catalogue
from galaxymorph.stats import vote_fractions

work = Path(WORK)

# %% [markdown]
# ## The catalogue
#
# The Kaggle file holds cumulative vote fractions; `kaggle_to_catalogue` turns them
# into the `gz2` tree's vote counts (assuming 40 volunteers per galaxy). The
# simulator writes a `gz_decals_dr5` catalogue directly. Either way the result has
# the same form, and `galaxymorph schemas show NAME` lists its vote columns.

# %%
if GZ2_KAGGLE:
    schema, source_crop = get_schema("gz2"), 0.66  # the galaxy fills the centre of a GZ2 cut-out
    kaggle = Path(GZ2_KAGGLE)
    catalogue = kaggle_to_catalogue(kaggle / "labels.csv", kaggle / "images").iloc[:GALAXIES]
    work.mkdir(parents=True, exist_ok=True)
    catalogue_path = work / "gz2.parquet"
    catalogue.to_parquet(catalogue_path)  # file_loc is absolute: the file may live anywhere
else:
    schema, source_crop = get_schema("gz_decals_dr5"), 1.0
    catalogue = simulate_catalogue(GALAXIES, IMAGE_PX, work / "simulation", seed=0, progress=False)
    catalogue_path = work / "simulation" / "catalogue.parquet"  # file_loc is relative to this folder

first = schema.questions[0]
catalogue[["id_str", "file_loc", *first.columns]].head()

# %% [markdown]
# ## Shards, then training
#
# `write_shards` validates the catalogue, decodes every image once and splits the
# galaxies into train / val / test by a hash of their id. `train` fits the model and
# returns the folder of the best model by validation loss. Both resume when re-run.

# %%
prep = Preprocessing(stored_size=IMAGE_PX, image_size=MODEL_PX, source_crop=source_crop)
manifest = write_shards(catalogue_path, schema, work / "shards", prep, test_fraction=0.2, workers=2, progress=False)
print({split: entry["count"] for split, entry in manifest["splits"].items()})

best = train(TrainConfig(shards=str(work / "shards"), out=str(work / "run"), arch=ARCH, epochs=EPOCHS,
                         batch_size=32, lr=2e-3, workers=1, progress=False))
pd.read_csv(work / "run" / "metrics.csv").groupby("epoch")[["train/loss_epoch", "val/loss"]].mean()

# %% [markdown]
# ## Predictions
#
# The encoder runs once per galaxy and the Dirichlet head 5 times with dropout on:
# each row holds the concentrations of every sample, the posterior mean vote
# fractions and their 90% credible intervals.

# %%
predict(best, work / "predictions.parquet", shards=work / "shards", split="test", samples=5, progress=False)
predictions, schema, metadata = read_predictions(work / "predictions.parquet")
answer = first.columns[0]
predictions[["id_str", f"{answer}_fraction", f"{answer}_q05", f"{answer}_q95"]].head()

# %% [markdown]
# ## Plots
#
# The first answer's predicted fraction against the volunteers' observed fraction
# (a perfect model sits on the diagonal up to the votes' own noise), and a few
# galaxies with their posteriors.

# %%
observed = catalogue.set_index("id_str").loc[predictions["id_str"]]
observed_fraction = vote_fractions(observed[list(schema.answers)].to_numpy(), schema)[:, schema.answers.index(answer)]
predicted = predictions[f"{answer}_fraction"].to_numpy()
interval = np.abs(predictions[[f"{answer}_q05", f"{answer}_q95"]].to_numpy().T - predicted)

fig, ax = plt.subplots(figsize=(4.5, 4.5))
ax.errorbar(observed_fraction, predicted, yerr=interval, fmt="o", ms=3, alpha=0.5, elinewidth=0.5)
ax.plot([0, 1], [0, 1], "k--", lw=1)
ax.set(xlabel=f"observed {answer}", ylabel="predicted (90% interval)", xlim=(0, 1), ylim=(0, 1))
plt.show()

# %%
shown = predictions.sort_values(f"{answer}_fraction").iloc[np.linspace(0, len(predictions) - 1, 6).astype(int)]
fig, axes = plt.subplots(1, 6, figsize=(12, 2.6))
for ax, (_, row) in zip(axes, shown.iterrows()):
    ax.imshow(load_image(catalogue_path.parent / observed.loc[row["id_str"], "file_loc"], IMAGE_PX, crop_fraction=source_crop))
    ax.set_title(f"{row[f'{answer}_fraction']:.2f} [{row[f'{answer}_q05']:.2f}, {row[f'{answer}_q95']:.2f}]", fontsize=8)
    ax.axis("off")
fig.suptitle(f"{answer}: posterior mean [90% interval]")
plt.show()
