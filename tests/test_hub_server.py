"""The end-to-end Hub round trips, against the local fake Hub (tests/hub_server.py): push a DSAML model (and a
PEFT adapter) and read it back as a user would on the real Hub. Every other Hub use is tested at the public
`huggingface_hub` boundary (the `hub_uploads` fixture, tests/hub_mocks.py); remote code loading in a fresh
interpreter without the package: test_auto_and_remote_code.py."""

from __future__ import annotations

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
    # in this process the installed package's registered class is used; test_auto_and_remote_code.py runs the
    # copied remote code in a fresh interpreter
    assert isinstance(extractor, DSAMLFeatureExtractor)
    x = torch.randn(1, 9, 51, 128)
    with torch.no_grad():
        assert torch.equal(loaded(x).logits, model(x).logits)
    downloads = [r.path for r in hub.requests if r.method in ("GET", "HEAD") and "/resolve/" in r.path]
    assert any(path.endswith("/model.safetensors") for path in downloads)


def test_peft_adapter_push_to_hub_and_from_pretrained_subfolder(hub):
    """A dsaml LoRA adapter is a plain PEFT adapter on the Hub: `PeftModel.push_to_hub`, then
    `PeftModel.from_pretrained(repo, subfolder=user)` (dsaml's own `push_adapters` is tested at the HfApi
    boundary in test_personalize.py)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(0)
    base = DSAMLForDynamicEmotionRecognition(small_config()).eval()
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["predictor.dense", "predictor.out"],
                        init_lora_weights=False)  # random LoRA weights: the adapter changes the output
    adapted = get_peft_model(base, config, adapter_name="alice").eval()
    adapted.push_to_hub("someone/alice-peft")
    assert "alice/adapter_config.json" in hub.files("someone/alice-peft")
    torch.manual_seed(0)
    again = PeftModel.from_pretrained(DSAMLForDynamicEmotionRecognition(small_config()).eval(), "someone/alice-peft",
                                      subfolder="alice", adapter_name="alice").eval()
    x = torch.randn(1, 9, 51, 128)
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, adapted(x).logits, rtol=0, atol=0)
    _assert_token_not_uploaded(hub)
