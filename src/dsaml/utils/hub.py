"""Publishing a local folder to the Hugging Face Hub as one commit: trained models, adapters and datasets.

A folder dsaml writes is already what the Hub needs (a model folder: safetensors weights, config.json with
`auto_map`, the `modeling/` remote-code files, the feature extractor config, the model card; an adapters folder:
PEFT files and fingerprints; a dataset folder: README configs, Parquet files, audio), so publishing is
`create_repo` + one `upload_folder` commit. The token comes from huggingface_hub's usual sources (`HF_TOKEN`,
`hf auth login`); it is never passed around, printed or written by dsaml.
"""

from __future__ import annotations

import os
from pathlib import Path

# files a published model folder must contain (remote code and card included)
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")
# hidden files (temporary files of an interrupted write, caches) and Python caches never go up
IGNORE_PATTERNS = [".*", "**/.*", "__pycache__/*", "**/__pycache__/*"]


def upload_folder(folder: str | os.PathLike, repo_id: str, *, repo_type: str = "model", private: bool = False,
                  commit_message: str):
    """Create `repo_id` if needed and upload `folder` as one commit; returns huggingface_hub's `CommitInfo`
    (`.commit_url`, `.repo_url`)."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    return api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type,
                             commit_message=commit_message, ignore_patterns=IGNORE_PATTERNS)


def push_model_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False,
                      commit_message: str = "Upload DSAML model trained with dsaml") -> str:
    """Upload a complete model folder (checked first); returns the commit URL."""
    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete model folder: missing {missing}")
    if not any(folder.glob("*_dsaml.py")):
        raise FileNotFoundError(f"{folder} has no remote-code files (*_dsaml.py): save it with save_pretrained")
    info = upload_folder(folder, repo_id, private=private, commit_message=commit_message)
    return str(info.commit_url)
