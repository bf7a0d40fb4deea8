"""Catalogues, image readers, shards, transforms and the Lightning DataModule.

Modules (import what you need; this package imports nothing eagerly so that
worker processes stay light):

- ``catalog``: ``read_catalogue`` validates a catalogue against a schema.
- ``kaggle_gz2``: the Kaggle GZ2 labels -> a ``gz2`` vote-count catalogue.
- ``images``: ``load_image`` for PNG/JPEG/FITS.
- ``shards``: ``write_shards`` / ``read_manifest`` (WebDataset tars).
- ``transforms``: ``Preprocessing``, ``train_transform``, ``eval_transform``.
- ``datamodule``: ``GalaxyDataModule``, ``PredictImages``, ``iter_catalogue_images``.
"""
