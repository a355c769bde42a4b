"""Publishing a trained model folder to the Hugging Face Hub.

The folder `dsaml train` exports is already what the Hub needs (safetensors weights, config.json with
`auto_map`, the `modeling/` remote-code files, the feature extractor config, the model card), so publishing
is one `upload_folder` commit. The token comes from huggingface_hub's usual sources (`HF_TOKEN`,
`hf auth login`); it is never passed around, printed or written by dsaml.
"""

from __future__ import annotations

import os
from pathlib import Path

# files a published model folder must contain (remote code and card included)
REQUIRED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


def push_model_folder(folder: str | os.PathLike, repo_id: str, *, private: bool = False,
                      commit_message: str = "Upload DSAML model trained with dsaml") -> str:
    """Create `repo_id` if needed and upload `folder` as one commit; returns the commit URL."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a complete model folder: missing {missing}")
    if not any(folder.glob("*_dsaml.py")):
        raise FileNotFoundError(f"{folder} has no remote-code files (*_dsaml.py): save it with save_pretrained")
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message,
        ignore_patterns=[".*", "**/.*", "__pycache__/*", "**/__pycache__/*"],
    )
    return str(getattr(info, "commit_url", info))
