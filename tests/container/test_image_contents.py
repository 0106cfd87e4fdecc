"""What the built images hold and who they run as, read from outside the container."""

from __future__ import annotations

import json

import pytest
from engine import BUILD_CA_PATH, EngineUnavailableError, find_docker, run, unavailable

# Printed by a python one-liner in the image: which modules and programs it has.
_PROBE = """
import importlib.util, json, shutil
modules = ["moto", "pip", "setuptools", "drs_poller"]
programs = ["pip", "pip3", "gcc", "cc", "c++", "g++", "clang", "make", "ld", "as"]
print(json.dumps({
    "modules": {m: importlib.util.find_spec(m) is not None for m in modules},
    "programs": {p: shutil.which(p) for p in programs},
}))
"""


def _probe(docker: str, image: str) -> dict:
    result = run(
        [docker, "run", "--rm", "--network", "host", "--entrypoint", "python", image, "-c", _PROBE]
    )
    return json.loads(result.stdout)


def _config(docker: str, image: str) -> dict:
    return json.loads(run([docker, "image", "inspect", image]).stdout)[0]["Config"]


def test_both_targets_build(docker, images):
    for image in (images.production, images.local):
        config = _config(docker, image)
        assert config["Entrypoint"] == ["drs-poller"]
        assert config["Cmd"] == ["run"]


def test_the_production_image_has_no_moto_no_pip_and_no_compiler(docker, images):
    found = _probe(docker, images.production)
    assert found["modules"]["drs_poller"]
    assert not found["modules"]["moto"]
    assert not found["modules"]["pip"]
    assert not found["modules"]["setuptools"]
    assert found["programs"] == dict.fromkeys(found["programs"])  # none on PATH
    # The local target does have moto (so the probe can see it when it is there).
    local = _probe(docker, images.local)
    assert local["modules"]["moto"]
    assert not local["modules"]["pip"]


def test_the_build_only_ca_bundle_and_pip_settings_stay_out_of_the_images(docker, images):
    for image in (images.production, images.local):
        env = dict(item.split("=", 1) for item in _config(docker, image)["Env"])
        assert not any(key.startswith("PIP_") for key in env), env
        result = run(
            [
                docker,
                "run",
                "--rm",
                "--network",
                "host",
                "--entrypoint",
                "python",
                image,
                "-c",
                f"import os; print(os.path.exists({BUILD_CA_PATH!r}))",
            ]
        )
        assert result.stdout.strip() == "False"


def test_the_image_runs_as_a_non_root_numeric_uid(docker, images):
    for image in (images.production, images.local):
        assert _config(docker, image)["User"] == "10001:10001"
        result = run(
            [
                docker,
                "run",
                "--rm",
                "--network",
                "host",
                "--entrypoint",
                "python",
                image,
                "-c",
                "import os; print(os.getuid(), os.getgid())",
            ]
        )
        assert result.stdout.split() == ["10001", "10001"], result.stdout


def test_no_engine_skips_here_and_fails_under_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker CLI on it
    with pytest.raises(EngineUnavailableError) as missing:
        find_docker()
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        unavailable(str(missing.value))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no docker CLI"):
        unavailable(str(missing.value))
