"""Loading models, tokenizers and datasets by Hugging Face id or local path.

Every loader follows the same order: a local path is used as is; a hub id is first looked up
in the local cache (so a machine that downloaded once works offline); only then is the hub
asked, after a short reachability probe. An unreachable hub becomes one clear error ("offline:
use --preset tiny or a local path") within seconds instead of a long hang in retries, and a
name the hub does not know becomes an `UnknownModelError`.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from lfp_engine.run.errors import HubUnreachableError, UnknownModelError

log = logging.getLogger(__name__)

T = TypeVar("T")

OFFLINE_HINT = "offline: use --preset tiny or a local path"
PROBE_TIMEOUT_S = 5.0

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).expanduser().exists()


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _offline_forced() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def probe_hub(repo_id: str, kind: str = "model") -> None:
    """Raise unless the hub answers for `repo_id` within a few seconds.

    Uses the public API route of the repo: a 404 means the name is unknown, any network
    failure (refused, DNS, timeout) means the hub cannot be reached.
    """
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UnknownModelError(
            f"{repo_id!r} is neither an existing local path nor a valid Hugging Face {kind} id"
        ) from None
    if _offline_forced():
        raise HubUnreachableError(f"{OFFLINE_HINT} (HF_HUB_OFFLINE is set and {repo_id!r} is not cached)")
    route = "datasets" if kind == "dataset" else "models"
    url = f"{_endpoint()}/api/{route}/{repo_id}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code in (401, 404):
            raise UnknownModelError(
                f"the hub has no {kind} {repo_id!r} (or it is gated and you are not logged in)"
            ) from None
        raise HubUnreachableError(f"{OFFLINE_HINT} (the hub answered {err.code} for {repo_id!r})") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        raise HubUnreachableError(f"{OFFLINE_HINT} (cannot reach {_endpoint()} to fetch {repo_id!r}: {err})") from None


def is_cached(repo_id: str, kind: str = "model") -> bool:
    """Whether a hub id was downloaded before: a snapshot in the hub cache, or (datasets) the
    `datasets` library's own cache, which `load_dataset_split` reads offline."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    snapshots = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=kind) / "snapshots"
    if snapshots.is_dir() and any(snapshots.iterdir()):
        return True
    if kind == "dataset":
        import datasets

        return (Path(datasets.config.HF_DATASETS_CACHE) / repo_id.replace("/", "___")).is_dir()
    return False


def check_reachable(name_or_path: str, kind: str = "model") -> None:
    """Raise unless `name_or_path` can be loaded (a local path, a cached hub id, or one the hub
    answers for), reading nothing but the cache and the hub's reply: so a run can refuse an
    unreachable input before it writes anything."""
    if not (is_local(name_or_path) or is_cached(name_or_path, kind)):
        probe_hub(name_or_path, kind)


def from_hub_or_path(loader: Callable[..., T], name_or_path: str, kind: str = "model", **kwargs: Any) -> T:
    """Call a `from_pretrained`-style loader on a path, the local cache, or the hub, in that order."""
    if is_local(name_or_path):
        return loader(str(Path(name_or_path).expanduser()), **kwargs)
    try:
        return loader(name_or_path, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        log.info("%s %s not in the local cache; asking the hub", kind, name_or_path)
    probe_hub(name_or_path, kind)
    return loader(name_or_path, **kwargs)


def resolve_device(device: str) -> torch.device:
    """'auto' is the GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_causal_lm(name_or_path: str, device: torch.device | str = "cpu", dtype: str = "float32"):
    """Any causal LM through `AutoModelForCausalLM`, in eval mode on `device`."""
    from transformers import AutoModelForCausalLM

    model = from_hub_or_path(AutoModelForCausalLM.from_pretrained, name_or_path, dtype=DTYPES[dtype])
    return model.to(device).eval()


def load_tokenizer(name_or_path: str):
    """The model's tokenizer, with a pad token (causal LMs often ship none; EOS serves)."""
    from transformers import AutoTokenizer

    tokenizer = from_hub_or_path(AutoTokenizer.from_pretrained, name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def token_strings(tokenizer) -> list[str]:
    """Every token id decoded on its own (' great', not 'Ġgreat'), for showing examples and logits."""
    return tokenizer.batch_decode([[i] for i in range(len(tokenizer))])


def load_sequence_classifier(name_or_path: str, device: torch.device | str = "cpu"):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = from_hub_or_path(AutoModelForSequenceClassification.from_pretrained, name_or_path)
    tokenizer = from_hub_or_path(AutoTokenizer.from_pretrained, name_or_path)
    return model.to(device).eval(), tokenizer


_FILE_FORMATS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}


def load_dataset_split(name_or_path: str, split: str):
    """One split of a dataset: a hub id, a data file, or a folder (`save_to_disk` or data files).

    A single local file has only a 'train' split in `datasets`' terms; it is returned whatever
    split is asked, since the caller splits it itself.
    """
    import datasets

    path = Path(name_or_path).expanduser()
    if path.is_file():
        fmt = _FILE_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise UnknownModelError(f"{path} is not a dataset file (expected one of {sorted(_FILE_FORMATS)})")
        return datasets.load_dataset(fmt, data_files=str(path), split="train")
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            loaded = datasets.load_from_disk(str(path))
            return loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        return datasets.load_dataset(str(path), split=split)
    try:
        probe_hub(name_or_path, "dataset")
    except HubUnreachableError:
        # A dataset downloaded before is still usable offline from the datasets cache.
        previous = datasets.config.HF_HUB_OFFLINE
        datasets.config.HF_HUB_OFFLINE = True
        try:
            return datasets.load_dataset(name_or_path, split=split)
        except Exception:  # noqa: BLE001 - any failure here means "not cached"
            raise HubUnreachableError(f"{OFFLINE_HINT} (dataset {name_or_path!r} is not cached)") from None
        finally:
            datasets.config.HF_HUB_OFFLINE = previous
    return datasets.load_dataset(name_or_path, split=split)
