"""The dataset to review: a local repository folder, or a Hub dataset repo downloaded into one.

Pull writes the `reviewed` config and the review counts into that folder, so a Hub dataset comes
back reviewed by uploading the folder again (`pipelines/publish.py`).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx2  # huggingface_hub's HTTP client
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from steps.errors import UserError
from steps.repo_folder import configs

DOWNLOADED = ["data/**", "*.json", "*.parquet", "README.md", "plots/*"]


def local_folder(source: str, download_dir: Path) -> Path:
    """`source` itself when it is a folder, else the Hub dataset repo `source` under download_dir."""
    path = Path(source)
    if not path.exists():
        if not _is_repo_id(source):
            raise UserError(f"{source}: neither a dataset folder nor a Hub dataset repo id "
                            "(NAMESPACE/NAME)")
        path = download_dir / source.replace("/", "__")
        try:
            snapshot_download(source, repo_type="dataset", local_dir=path, allow_patterns=DOWNLOADED)
        except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{source}: cannot download the dataset repo from the Hub ({reason}); "
                            "check the id and your token (HF_TOKEN)") from None
    if not configs(path):
        raise UserError(f"{path}: no data/<config>/*.parquet here; give a folder a pipeline wrote")
    return path


def queue_prefix(folder: Path) -> str:
    """Default name prefix of the Argilla datasets: the folder's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name) or "genteach"


def _is_repo_id(source: str) -> bool:
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return "/" in source
