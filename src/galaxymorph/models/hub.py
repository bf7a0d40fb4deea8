"""Encoders by name from the Hugging Face hub: ``hf_hub:ORG/NAME[@REVISION]``, timm's own convention.

The name resolves to a folder of huggingface_hub's cache (``HF_HUB_CACHE``) holding the
repository's ``config.json`` and its weights (``model.safetensors``, else
``pytorch_model.bin``), downloaded first if they are not cached and the hub can be
reached. Offline (``HF_HUB_OFFLINE=1``) only the cache is read. The folder is then
loaded like any local timm folder (:func:`galaxymorph.models.load_encoder`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HUB_PREFIX", "WEIGHT_FILES", "hub_folder", "is_hub_name", "is_zoobot_encoder"]

HUB_PREFIX = "hf_hub:"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference, as timm's
# Zoobot's published encoders: fed [0, 1] images, whatever their config.json's pretrained_cfg says (docs/finetune.md)
ZOOBOT_ENCODERS = "mwalmsley/zoobot-encoder-"


def is_hub_name(source: object) -> bool:
    """Whether ``source`` names a hub encoder (``hf_hub:ORG/NAME``) rather than a local folder."""
    return isinstance(source, str) and source.startswith(HUB_PREFIX)


def is_zoobot_encoder(source: object) -> bool:
    """Whether ``source`` is one of Zoobot's published encoders (``hf_hub:mwalmsley/zoobot-encoder-...``)."""
    return is_hub_name(source) and _split(str(source))[0].startswith(ZOOBOT_ENCODERS)


def _split(name: str) -> tuple[str, str | None]:
    """``hf_hub:ORG/NAME@REV`` -> (``ORG/NAME``, ``REV`` or None)."""
    repo_id, _, revision = name.removeprefix(HUB_PREFIX).partition("@")
    return repo_id, revision or None


def hub_folder(name: str) -> Path:
    """The cached snapshot folder (``config.json`` and weights) of hub encoder ``name``, downloaded if needed.

    Raises:
        FileNotFoundError: not cached and not downloadable (offline, no network), no such
            repository, or one without a timm ``config.json`` or weights; the one-line
            message names the encoder and what to do.

    Example:
        >>> hub_folder("hf_hub:mwalmsley/zoobot-encoder-convnext_nano")  # doctest: +SKIP
        PosixPath('/home/me/.cache/huggingface/hub/models--mwalmsley--zoobot-encoder-convnext_nano/snapshots/9bad7d2...')
    """
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = _split(name)
    fetch = f"download it where the hub can be reached with `hf download {repo_id}` into the same cache (HF_HUB_CACHE)"
    try:
        folder = Path(hf_hub_download(repo_id, "config.json", revision=revision)).parent
        uncached = False
        for filename in WEIGHT_FILES:  # from the same snapshot, so config and weights always belong together
            try:
                hf_hub_download(repo_id, filename, revision=folder.name)
                return folder
            except LocalEntryNotFoundError:
                uncached = True
            except EntryNotFoundError:
                continue
    except LocalEntryNotFoundError:
        uncached = True
    except (RepositoryNotFoundError, RevisionNotFoundError, HFValidationError) as err:
        raise FileNotFoundError(f"{name}: no such model on the Hugging Face hub ({type(err).__name__}); check the "
                                "name (private or gated ones need `hf auth login` first)") from None
    except EntryNotFoundError:
        raise FileNotFoundError(f"{name} has no config.json: not a timm encoder; use a timm model repository") from None
    if uncached:
        offline = " (HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
        raise FileNotFoundError(f"{name} is not in the Hugging Face cache {constants.HF_HUB_CACHE} and cannot be "
                                f"downloaded here{offline}; {fetch}, or pass a local folder with its files")
    raise FileNotFoundError(f"{name} has none of {', '.join(WEIGHT_FILES)}; a timm encoder repository needs one")
