"""A LoRA adapter folder (what `recipes/dpo.py` saves with `use_peft`) loads in the transformers backend."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from safevid.backends import ChatRequest, SamplingParams, make_backend
from safevid.testing.tiny_models import build_tiny_model


def _greedy(model_path: str) -> str:
    backend = make_backend(kind="transformers", model=model_path, cache=False)
    request = ChatRequest([{"role": "user", "content": "Describe the risks."}], SamplingParams(max_tokens=6))
    result = backend.generate([request], progress=False)[0]
    assert result.ok, result.error
    return result.text


def test_an_adapter_folder_is_merged_onto_its_base(tmp_path):
    base = build_tiny_model("text")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules="all-linear")
    )
    with torch.no_grad():  # LoRA's B starts at zero: make the adapter change the model's outputs
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=2.0, generator=torch.Generator().manual_seed(0))
    model.save_pretrained(tmp_path / "adapter")
    assert not (tmp_path / "adapter" / "config.json").exists()  # an adapter, not a full checkpoint

    backend = make_backend(kind="transformers", model=str(tmp_path / "adapter"), cache=False)
    backend.load()
    merged = model.merge_and_unload()
    loaded = dict(backend.model.named_parameters())
    for name, parameter in merged.named_parameters():
        torch.testing.assert_close(loaded[name], parameter)
    assert _greedy(str(tmp_path / "adapter")) != _greedy(str(base))


def test_a_checkpoint_saved_again_in_place_misses_the_response_cache(tmp_path):
    """Retraining into the same folder (a DPO `output_dir`) must not serve the old model's cached answers."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(build_tiny_model("text"), folder)
    request = ChatRequest([{"role": "user", "content": "Is this safe?"}], SamplingParams(max_tokens=4))
    options = {"kind": "transformers", "model": str(folder), "cache_dir": str(tmp_path / "cache")}

    assert not make_backend(**options).generate([request], progress=False)[0].cached
    assert make_backend(**options).generate([request], progress=False)[0].cached  # same weights: a hit

    model = AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    model.save_pretrained(folder)
    assert not make_backend(**options).generate([request], progress=False)[0].cached
