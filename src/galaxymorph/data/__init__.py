"""Catalogues, image readers, shards, transforms, and the batches every command reads.

Modules (import what you need; this package imports nothing eagerly so that
worker processes stay light):

- ``catalogue``: ``read_table`` reads any catalogue-like table, ``read_catalogue`` validates one against a schema.
- ``kaggle_gz2``: the Kaggle GZ2 labels -> a ``gz2`` vote-count catalogue.
- ``images``: ``load_image`` for PNG/JPEG/FITS.
- ``extent``: ``measure_extent``, the central galaxy's centre, Petrosian-like radius and sky.
- ``normalise``: ``SizeCrop`` and ``Photometry``, the per-galaxy normalisations a ``Preprocessing`` may hold.
- ``transforms``: ``Preprocessing`` (how a file becomes stored pixels and a model input), ``train_transform``,
  ``eval_transform``.
- ``shards``: ``write_shards`` / ``read_manifest`` (WebDataset tars).
- ``stream``: the training stream over shards (every galaxy once per epoch, exact resumption).
- ``datamodule``: ``GalaxyDataModule``, training / validation / test batches from shards or a catalogue.
- ``inputs``: the galaxies to predict, embed or fine-tune on (a folder, a catalogue or shards): one stack.
- ``labelled``: labelled catalogues for fine-tuning.
"""
