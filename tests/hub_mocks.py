"""The `hub_uploads` fixture: dsaml's Hub traffic checked at the public `huggingface_hub` boundary.

`HfApi.create_repo` and `HfApi.upload_folder` are replaced by recorders (the folder is read when the upload is
called, with the given `ignore_patterns`, as huggingface_hub would), and `huggingface_hub.snapshot_download`
serves what was uploaded, so a test can publish with dsaml and read back through dsaml's own loaders. The one
end-to-end round trip against a fake Hub server is in test_hub_server.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

TEST_TOKEN = "hf_dummy_test_token"


@dataclass
class Upload:
    repo_id: str
    repo_type: str
    commit_message: str
    ignore_patterns: list[str] | None
    files: dict[str, bytes] = field(default_factory=dict)


class RecordedHub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.created: list[dict] = []
        self.uploads: list[Upload] = []

    def files(self, repo_id: str, repo_type: str = "model") -> dict[str, bytes]:
        """The repo's files after every recorded upload (later uploads win)."""
        merged: dict[str, bytes] = {}
        for upload in self.uploads:
            if (upload.repo_id, upload.repo_type) == (repo_id, repo_type):
                merged.update(upload.files)
        return merged

    def create_repo(self, api, repo_id, *, repo_type=None, private=False, exist_ok=False, **kwargs):
        from huggingface_hub.hf_api import RepoUrl

        self.created.append({"repo_id": repo_id, "repo_type": repo_type or "model", "private": private,
                             "exist_ok": exist_ok})
        prefix = "" if (repo_type or "model") == "model" else f"{repo_type}s/"
        return RepoUrl(f"https://huggingface.co/{prefix}{repo_id}")

    def upload_folder(self, api, *, folder_path, repo_id, repo_type=None, commit_message=None,
                      ignore_patterns=None, **kwargs):
        from huggingface_hub.hf_api import CommitInfo
        from huggingface_hub.utils import filter_repo_objects

        folder = Path(folder_path)
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        kept = filter_repo_objects(names, ignore_patterns=ignore_patterns)
        upload = Upload(repo_id, repo_type or "model", commit_message, ignore_patterns,
                        {name: (folder / name).read_bytes() for name in kept})
        self.uploads.append(upload)
        prefix = "" if upload.repo_type == "model" else f"{upload.repo_type}s/"
        return CommitInfo(commit_url=f"https://huggingface.co/{prefix}{repo_id}/commit/{'0' * 40}",
                          commit_message=commit_message or "", commit_description="", oid="0" * 40)

    def snapshot_download(self, repo_id, *, repo_type=None, **kwargs) -> str:
        files = self.files(repo_id, repo_type or "model")
        if not files:
            from huggingface_hub.errors import RepositoryNotFoundError

            raise RepositoryNotFoundError(f"{repo_id}: nothing uploaded")
        target = self.root / (repo_type or "model") / repo_id
        for name, content in files.items():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(content)
        return str(target)


@pytest.fixture
def hub_uploads(monkeypatch, tmp_path_factory) -> RecordedHub:
    import huggingface_hub
    from huggingface_hub import HfApi

    recorder = RecordedHub(tmp_path_factory.mktemp("snapshots"))
    monkeypatch.setenv("HF_TOKEN", TEST_TOKEN)  # dsaml must never write it anywhere
    monkeypatch.setattr(HfApi, "create_repo", lambda api, *a, **k: recorder.create_repo(api, *a, **k))
    monkeypatch.setattr(HfApi, "upload_folder", lambda api, *a, **k: recorder.upload_folder(api, *a, **k))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", recorder.snapshot_download)
    return recorder
