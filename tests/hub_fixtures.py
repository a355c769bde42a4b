"""The ``hub`` pytest fixture: a local fake Hugging Face Hub (tests/hub_server.py) for the end-to-end round trip.

``huggingface_hub`` reads ``HF_ENDPOINT`` and friends at import time, so setting the environment is not enough once it
is imported: the fixture also patches the module constants that are already bound (``constants.ENDPOINT``,
``constants.HUGGINGFACE_CO_URL_TEMPLATE``, ``constants.HF_URL_HOSTS``, ``constants.HF_HUB_DISABLE_XET``,
``constants.HF_HUB_OFFLINE``), the module-level ``HfApi`` instance behind ``huggingface_hub.create_repo`` & co
(``hf_api.api.endpoint``) and transformers' shared ``HfApi`` (``transformers.utils.hub._hf_api``).
Downloads go to a per-test cache (``HF_HOME`` / ``HF_HUB_CACHE`` / ``HF_DATASETS_CACHE`` under ``tmp_path``).
"""

from __future__ import annotations

import pytest
from hub_server import FakeHub

TEST_TOKEN = "hf_dummy_test_token"


def _patch_hub_modules(monkeypatch: pytest.MonkeyPatch, url: str, cache) -> None:
    from urllib.parse import urlsplit

    from huggingface_hub import constants, hf_api

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {urlsplit(url).hostname})
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(constants, "HUGGINGFACE_HUB_CACHE", str(cache / "hub"))
    monkeypatch.setattr(hf_api.api, "endpoint", url)

    # transformers keeps one lazily created HfApi (bound to the endpoint of its creation): make a fresh one per test
    import transformers.utils.hub as transformers_hub

    if hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path_factory) -> FakeHub:
    """A running fake Hub; the environment and the already-imported libraries point at it for the test's duration.

    Yields the :class:`hub_server.FakeHub`: ``.url``, ``.files(repo_id, repo_type="model")``, ``.requests``.
    """
    cache = tmp_path_factory.mktemp("hf_home")
    server = FakeHub().start()
    env = {
        "HF_ENDPOINT": server.url,
        "HF_TOKEN": TEST_TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "0",
        "HF_HOME": str(cache),
        "HF_HUB_CACHE": str(cache / "hub"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    _patch_hub_modules(monkeypatch, server.url, cache)
    try:
        yield server
    finally:
        server.stop()
