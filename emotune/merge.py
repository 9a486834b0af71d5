"""The standalone model of a run, shared by the transformers export (emotune/export.py) and the ONNX export
(emotune/onnx_export.py): peft adapters merged into the base weights, QLoRA's update merged into the
dequantised (or original) float base; and the run's test rows the exports are checked on."""
from __future__ import annotations

from emotune.adapter_table import adapter_entry
from emotune.errors import EmotuneError
from emotune.runs import Run


# ---------------------------------------------------------------------------------------------
# Building the standalone model
# ---------------------------------------------------------------------------------------------
def _registry(run: Run):
    from emotune.plan import model_source

    return model_source(run.plan.model)[1]


def dequantize_into(quantized, target) -> int:
    """Copy the dequantised weight of every bitsandbytes 4-bit layer of `quantized` into the module of the
    same name in `target` (an unquantised copy of the same model); returns how many were copied."""
    import bitsandbytes as bnb
    import torch

    modules = dict(target.named_modules())
    copied = 0
    with torch.no_grad():
        for name, module in quantized.named_modules():
            if isinstance(module, bnb.nn.Linear4bit):
                weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
                modules[name].weight.copy_(weight.to(modules[name].weight.dtype).reshape(modules[name].weight.shape))
                copied += 1
    if not copied:
        raise EmotuneError("qlora export: the 4-bit base has no 4-bit layer to dequantise")
    return copied


def float_base(run: Run, qlora_base: str):
    """The base model unquantised in float32 (classifier or causal LM, as the run), its 4-bit layers
    replaced by their dequantised values when `qlora_base` is "dequantized"."""
    from emotune.adapters import _check_base
    from emotune.model_registry import load_for_classification

    meta, registry = run.metadata, _registry(run)
    if run.generative:
        from emotune.generative import load_causal

        def load(quantized: bool):
            return load_causal(meta["base_model"], run.adapter, meta["labels"], meta["task"], registry=registry,
                               quantize_4bit=quantized)
    else:
        def load(quantized: bool):
            return load_for_classification(meta["base_model"], meta["labels"], meta["problem_type"],
                                           quantize_4bit=quantized, registry=registry)
    loaded = load(False)
    _check_base(meta, loaded, run.folder)  # the base the adapter was trained on, unchanged
    if qlora_base == "dequantized":
        dequantize_into(load(True).model, loaded.model)
    return loaded.model


def merged_model(run: Run, trained, qlora_base: str = "dequantized"):
    """The standalone model: merged (peft adapters), or the trained model itself (full, head)."""
    entry = adapter_entry(run.adapter)
    if not entry.peft:  # full, head
        return trained.model
    if entry.quantized:  # qlora, gen_qlora
        from peft import PeftModel

        peft_model = PeftModel.from_pretrained(float_base(run, qlora_base), run.folder, is_trainable=False)
        return peft_model.merge_and_unload().eval()
    # lora, dora, ia3, gen_lora: merge into a fresh load, so `trained` stays the unmerged reference
    return run.load().model.merge_and_unload().eval()


def _test_rows(run: Run, limit: int, generative: bool):
    from emotune.paths import run_paths
    from emotune.rows import load_rows

    data = run_paths(run.dataset, run.model, run.adapter, run.root).data
    try:
        frame = load_rows(data, "test", generative)
    except EmotuneError as exc:
        return None, str(exc)
    return frame.iloc[:limit].reset_index(drop=True), str((data / ("gen_test.parquet" if generative else
                                                                   "test.parquet")).relative_to(run.root))
