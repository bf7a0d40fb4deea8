"""Public Galaxy Zoo releases from Zenodo: fetched, verified, unpacked and made into catalogues.

:func:`fetch` is the one entry point (``galaxymorph fetch``); :data:`RELEASES` lists
the releases it knows by name, and :func:`gz_decals_catalogue` converts GZD-5's
volunteer table on its own.
"""

from galaxymorph.archive.fetching import Fetched, fetch
from galaxymorph.archive.gz_decals import gz_decals_catalogue
from galaxymorph.archive.releases import RELEASES, Release
from galaxymorph.archive.zenodo import FetchError, Offline, Record, RecordFile, Retry, read_record, zenodo_server

__all__ = [
    "RELEASES", "FetchError", "Fetched", "Offline", "Record", "RecordFile", "Release", "Retry", "fetch",
    "gz_decals_catalogue", "read_record", "zenodo_server",
]
