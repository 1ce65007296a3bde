"""Device, dtype and quantization resolution; no GPU needed."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from server.errors import ConfigError
from workers.device import resolve_placement, set_torch_threads


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)


@pytest.fixture
def no_bitsandbytes(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )


def test_auto_without_gpu_is_cpu_float32(no_gpu):
    placement = resolve_placement(model="m")
    assert placement.device == "cpu"
    assert placement.dtype == torch.float32
    assert placement.model_kwargs() == {"dtype": torch.float32}


def test_auto_with_gpu_is_cuda_bfloat16(gpu):
    placement = resolve_placement(model="m")
    assert placement.device == "cuda"
    assert placement.dtype == torch.bfloat16
    assert placement.model_kwargs()["device_map"] == {"": "cuda"}


def test_gpu_without_bf16_uses_float16(gpu, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_placement(model="m").dtype == torch.float16


def test_process_default_applies_when_the_model_says_auto(gpu):
    assert resolve_placement(model="m", default_device="cpu").device == "cpu"
    assert resolve_placement(model="m", device="cuda:1").device == "cuda:1"


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu_says_what_to_use(no_gpu, device):
    with pytest.raises(ConfigError) as caught:
        resolve_placement(model="big", device=device)
    message = str(caught.value)
    assert f"'{device}'" in message and "no GPU is visible" in message
    assert "'cpu' or 'auto'" in message


def test_missing_gpu_index_is_named(gpu):
    with pytest.raises(ConfigError, match=r"'cuda:5'.*2 GPU\(s\)"):
        resolve_placement(model="m", device="cuda:5")


def test_unknown_device_is_refused(no_gpu):
    with pytest.raises(ConfigError, match="'tpu'"):
        resolve_placement(model="m", device="tpu")


def test_float16_on_cpu_is_allowed(no_gpu):
    assert resolve_placement(model="m", dtype="float16").dtype == torch.float16


def test_quantization_on_cpu_names_model_and_fix(no_gpu):
    with pytest.raises(ConfigError) as caught:
        resolve_placement(model="llama-8b", quantization="4bit")
    message = str(caught.value)
    assert "'llama-8b'" in message and "4bit" in message
    assert "quantization to 'none'" in message


def test_quantization_without_bitsandbytes_gives_the_install_command(
    gpu, no_bitsandbytes
):
    with pytest.raises(ConfigError) as caught:
        resolve_placement(model="llama-8b", quantization="8bit")
    assert "pip install 'hearth[gpu]'" in str(caught.value)
    assert "'llama-8b'" in str(caught.value)


def test_set_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        set_torch_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ConfigError, match="got 0"):
        set_torch_threads(0)
