"""Upload the local repository folder to the Hugging Face Hub as exactly one commit.

One `create_commit` holds every file of the folder (and deletes remote files the folder no longer
has), so the Hub repository is always one complete run: the server applies a commit whole or not
at all, and unchanged files are skipped, so re-pushing an unchanged folder commits nothing. Any
failure leaves the local folder untouched and becomes one line saying what to do.
"""

from __future__ import annotations

from pathlib import Path

import httpx2  # huggingface_hub's HTTP client: its transport errors (refused, DNS, timeout)
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from steps.errors import UserError
from steps.publish.card import README
from steps.publish.scrub import secret_values

KEEP_REMOTE = {".gitattributes"}  # the Hub's own file: never deleted by a push


def push_folder(repo_dir: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload every file of `repo_dir` to the dataset repo in one commit.

    The repo is created if needed (`private` applies on creation only). Token: `token`, else
    HF_TOKEN, else the login cache. Returns the commit URL (the current head's when nothing
    changed).

    Raises:
        UserError: a bad repo id, no card, no token, a file holding a secret, or a failed push
            (nothing committed, the folder intact).
    """
    check_repo_id(repo_id)
    if not (repo_dir / README).is_file():
        raise UserError(f"{repo_dir}: no {README}; render the card first "
                        f"(python pipelines/publish.py --repo-dir {repo_dir})")
    token = token or get_token()
    if not token:
        raise UserError(f"--push-to-hub: no Hugging Face token; run `hf auth login` or set HF_TOKEN,"
                        f" then rerun (the repository folder {repo_dir} is complete)")
    files = local_files(repo_dir)
    secrets = [token, *secret_values()]
    for name in files:
        if contains_any(repo_dir / name, secrets):
            raise UserError(f"{repo_dir / name}: contains a token or API key; remove it and rerun "
                            "(nothing was uploaded)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        stale = set(api.list_repo_files(repo_id, repo_type="dataset")) - set(files) - KEEP_REMOTE
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=repo_dir / name)
                      for name in files]
        operations += [CommitOperationDelete(path_in_repo=name) for name in sorted(stale)]
        info = api.create_commit(repo_id, operations, repo_type="dataset",
                                 commit_message=f"Upload {len(files)} files with genteach")
    except (HfHubHTTPError, httpx2.HTTPError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"push to {repo_id} failed ({reason}); nothing was committed and {repo_dir} is intact: "
            f"fix that and rerun `python pipelines/publish.py --repo-dir {repo_dir} "
            f"--push-to-hub {repo_id}`"
        ) from None
    return info.commit_url


def check_repo_id(repo_id: str) -> None:
    """NAMESPACE/NAME as the Hub accepts it; the namespace is required (the card names the repo)."""
    try:
        validate_repo_id(repo_id)
        valid = repo_id.count("/") == 1
    except HFValidationError:
        valid = False
    if not valid:
        raise UserError(f"--push-to-hub {repo_id!r}: not a Hub repo id; use NAMESPACE/NAME "
                        "(letters, digits, '-', '_', '.')")


def local_files(repo_dir: Path) -> list[str]:
    """Every file of the folder as a repo path, skipping hidden paths and unfinished `.tmp` files."""
    return sorted(
        path.relative_to(repo_dir).as_posix() for path in repo_dir.rglob("*")
        if path.is_file() and path.suffix != ".tmp"
        and not any(part.startswith(".") for part in path.relative_to(repo_dir).parts)
    )


def contains_any(path: Path, needles: list[str]) -> bool:
    """Whether the file's bytes, or for Parquet its decoded strings, contain any of `needles`."""
    needles = [n for n in needles if n]
    data = path.read_bytes()
    if any(n.encode() in data for n in needles):
        return True
    if path.suffix != ".parquet":
        return False
    return any(
        pc.any(pc.match_substring(strings, needle)).as_py()
        for column in pq.read_table(path).columns
        for strings in _string_leaves(column.combine_chunks())
        for needle in needles
    )


def _string_leaves(array: pa.Array) -> list[pa.Array]:
    """The string arrays nested anywhere in `array` (lists flattened, struct fields split)."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return [array]
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type):
        return _string_leaves(array.flatten())
    if pa.types.is_struct(array.type):
        return [leaf for i in range(array.type.num_fields) for leaf in _string_leaves(array.field(i))]
    return []
