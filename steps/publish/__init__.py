"""Publishing a run: the dataset card, its charts, and the one-commit upload to the Hub.

write_card(repo_dir, repo_id)             README.md + plots/ from what the folder holds
push_folder(repo_dir, repo_id, private)   the whole folder as one Hub commit
check_repo_id(repo_id)                    NAMESPACE/NAME, checked before any work
scrub_secrets(value)                      secrets out of anything written down (run.json…)
portable(value)                           local paths, user and host names out of it too
"""

from steps.publish.card import write_card
from steps.publish.scrub import portable, scrub_secrets
from steps.publish.upload import check_repo_id, push_folder

__all__ = ["check_repo_id", "portable", "push_folder", "scrub_secrets", "write_card"]
