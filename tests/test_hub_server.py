"""The fake Hub (tests/hub_server.py): push a DSAML model and read it back through it, as a user would on the real Hub."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import small_config
from hub_fixtures import TEST_TOKEN

from dsaml import DSAMLFeatureExtractor, DSAMLForDynamicEmotionRecognition

REPO = "user/dsaml-small"


def _push_small_model(repo: str = REPO) -> DSAMLForDynamicEmotionRecognition:
    torch.manual_seed(0)
    model = DSAMLForDynamicEmotionRecognition(small_config()).eval()
    model.push_to_hub(repo)
    DSAMLFeatureExtractor.from_model_config(model.config).push_to_hub(repo)
    return model


def _assert_token_not_uploaded(hub) -> None:
    token = TEST_TOKEN.encode()
    for (repo_type, repo_id) in list(hub.repos):
        for commit in hub.commits(repo_id, repo_type):
            for path, content in commit.files.items():
                assert token not in content, f"token found in {repo_type}:{repo_id}/{path}"


def test_push_to_hub_and_from_pretrained_roundtrip(hub):
    from transformers import AutoFeatureExtractor, AutoModel

    model = _push_small_model()
    files = hub.files(REPO)
    assert {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "configuration_dsaml.py",
        "modeling_dsaml.py",
        "feature_extraction_dsaml.py",
    } <= set(files)
    # the remote code travels with every file it imports relatively
    assert {name for name in files if name.endswith(".py")} >= {
        "dual_scale_attention_dsaml.py",
        "dual_scale_features_dsaml.py",
        "losses_dsaml.py",
    }
    assert files["model.safetensors"][:8] != b"version "  # a real file, not an LFS pointer
    # every write was authenticated; uploads went through commits
    writes = [r for r in hub.requests if r.method == "POST"]
    assert writes and all(r.authorized for r in writes)
    assert "model.safetensors" in hub.uploaded_paths()
    _assert_token_not_uploaded(hub)

    loaded = AutoModel.from_pretrained(REPO, trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(REPO, trust_remote_code=True)
    # in this process the installed package's registered class is used; the fresh-interpreter test below runs the
    # Hub's copy of the code
    assert isinstance(extractor, DSAMLFeatureExtractor)
    x = torch.randn(1, 9, 51, 128)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    downloads = [r.path for r in hub.requests if r.method in ("GET", "HEAD") and "/resolve/" in r.path]
    assert any(path.endswith("/model.safetensors") for path in downloads)


@pytest.mark.filterwarnings("ignore:It seems that you are about to commit a data file")
def test_hub_api_surface(hub, tmp_path):
    """create_repo / upload_folder / list / info / snapshot_download for models and datasets."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

    api = HfApi()
    folder = tmp_path / "folder"
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# hi\n")
    (folder / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1" + bytes(range(256)) * 10)
    for repo_type in ("model", "dataset"):
        url = api.create_repo("user/thing", repo_type=repo_type)
        assert url.repo_id == "user/thing"
        api.create_repo("user/thing", repo_type=repo_type, exist_ok=True)
        info = api.upload_folder(folder_path=folder, repo_id="user/thing", repo_type=repo_type)
        assert info.oid
        assert sorted(api.list_repo_files("user/thing", repo_type=repo_type)) == [
            "README.md",
            "data/train-00000-of-00001.parquet",
        ]
        repo_info = api.repo_info("user/thing", repo_type=repo_type)
        assert repo_info.sha == info.oid
        assert {s.rfilename for s in repo_info.siblings} == {"README.md", "data/train-00000-of-00001.parquet"}
        local = snapshot_download("user/thing", repo_type=repo_type, cache_dir=tmp_path / f"cache_{repo_type}")
        assert (open(os.path.join(local, "data/train-00000-of-00001.parquet"), "rb").read()
                == (folder / "data" / "train-00000-of-00001.parquet").read_bytes())
        with pytest.raises(EntryNotFoundError):
            hf_hub_download("user/thing", "missing.txt", repo_type=repo_type, cache_dir=tmp_path / "c2")
        assert hub.files("user/thing", repo_type)["README.md"].startswith(b"---")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/nothing")
    # a second upload of unchanged content is a commit that uploads nothing new
    before = len(hub.commits("user/thing", "dataset"))
    api.upload_file(path_or_fileobj=b"new", path_in_repo="extra.txt", repo_id="user/thing", repo_type="dataset")
    assert len(hub.commits("user/thing", "dataset")) == before + 1
    assert hub.files("user/thing", "dataset")["extra.txt"] == b"new"
    _assert_token_not_uploaded(hub)


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys

    class BlockDsaml(importlib.abc.MetaPathFinder):
        # emulate a machine where the dsaml package is not installed
        def find_spec(self, name, path=None, target=None):
            if name == "dsaml" or name.startswith("dsaml."):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, BlockDsaml())
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    torch.manual_seed(1)
    x = torch.randn(1, 9, 51, 128)
    with torch.no_grad():
        torch.save(model(x).logits, sys.argv[2])
    """
)


def test_from_pretrained_in_fresh_interpreter_without_package(hub, tmp_path):
    model = _push_small_model("user/dsaml-fresh")
    out = tmp_path / "logits.pt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, "user/dsaml-fresh", str(out)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert TEST_TOKEN not in result.stdout + result.stderr
    torch.manual_seed(1)
    x = torch.randn(1, 9, 51, 128)
    with torch.no_grad():
        assert torch.equal(torch.load(out), model(x).logits)
