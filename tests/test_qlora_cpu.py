"""QLoRA on CPUs with and without AVX512-BF16 (issue 14), on any CPU.

bitsandbytes 0.50 decides once per layer, in `Linear4bit.__init__`, whether the CPU has AVX512-BF16
(`support_avx512bf16_for_cpu = has_avx512bf16()`). Where it has, the first forward in eval mode without
grad repacks the weight into a CPU-only layout (`quant_state.packing_format_for_cpu`) served by a fused
bfloat16 kernel that has no backward: one validation pass broke every later QLoRA training step, and the
exported model's probabilities differed from the run's by 2e-3. `avx512_bf16_cpu` makes bitsandbytes
believe it runs on such a CPU (the same function it calls), so these tests take that code path on a Zen 3
without the instruction set too.

Measured on an AMD EPYC (Zen 3, no AVX512-BF16): the packed kernel does not run correctly there at all.
bitsandbytes registers its CPU `gemv_4bit` only where `has_avx512bf16()` is true; a packed weight goes to
the default kernel, which reads it in the unpacked layout: a tiny Llama's logits were off by 0.21 on a
scale of 0.22, silently. So no test relies on the packed kernel's numbers; they check that it is never
entered (no layer left packed) and that what the stage produces is right.
"""
from __future__ import annotations

import json

import pytest
import torch
from toy_runs import LABELS, prepare_run
from use_runs import make_project, train_run

from emotune import adapters as ad
from emotune import export as ex
from emotune import predict as pr
from emotune import testing
from emotune import train as tr
from emotune.runs import resolve_run

torch.set_num_threads(1)
QUIET = lambda message: None  # noqa: E731
TEXTS = ["i am so happy and great today", "they hate this awful terrible day", "we are lonely and sad tonight"]


def packed(model) -> list[str]:
    """Names of the 4-bit layers whose weight is in bitsandbytes' packed CPU inference layout."""
    import bitsandbytes as bnb

    return [n for n, m in model.named_modules()
            if isinstance(m, bnb.nn.Linear4bit) and getattr(m.weight.quant_state, "packing_format_for_cpu", False)]


def linear4bit_count(model) -> int:
    import bitsandbytes as bnb

    return sum(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def simulate_avx512_bf16(monkeypatch) -> None:
    """Every Linear4bit built from now on (until monkeypatch undoes it) believes the CPU has AVX512-BF16."""
    import bitsandbytes as bnb
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    probe = bnb.nn.Linear4bit(64, 64, bias=False)
    assert probe.support_avx512bf16_for_cpu is True, "bitsandbytes no longer reads has_avx512bf16 here: " \
        "the simulation (and maybe the guard in model_registry.keep_4bit_layout_trainable) is stale"


@pytest.fixture
def avx512_bf16_cpu(monkeypatch):
    simulate_avx512_bf16(monkeypatch)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-qlora")
    made = {}

    def get(model_type: str):
        if model_type not in made:
            made[model_type] = testing.save_tiny_model(model_type, root / f"tiny-{model_type}")
        return made[model_type]

    return get


def test_the_simulated_cpu_really_takes_the_packing_path(avx512_bf16_cpu, tiny):
    """Without emotune's guard, bitsandbytes repacks on the first no-grad eval forward (so the tests below
    would catch the bug), and training on the repacked layer fails as it did on the Xeon."""
    loaded = ad.load_base(str(tiny("bert")), "qlora", LABELS)
    for m in loaded.model.modules():  # undo the guard: what bitsandbytes does by itself
        if hasattr(m, "support_avx512bf16_for_cpu"):
            m.support_avx512bf16_for_cpu = True
    model = ad.apply_adapter(loaded, "qlora", ad.AdapterHParams(r=4, alpha=8))
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    model.eval()
    with torch.no_grad():
        model(**enc)
    assert len(packed(model)) == linear4bit_count(model) > 0


@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_a_validation_pass_leaves_every_4bit_layer_trainable(avx512_bf16_cpu, tiny, model_type):
    loaded = ad.load_base(str(tiny(model_type)), "qlora", LABELS)
    model = ad.apply_adapter(loaded, "qlora", ad.AdapterHParams(r=4, alpha=8, dropout=0.0))
    enc = loaded.tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor([0, 1, 2])
    model.eval()
    with torch.no_grad():
        before = model(**enc).logits
    assert linear4bit_count(model) > 0 and packed(model) == []
    model.train()
    loss = model(**enc, labels=labels).loss
    loss.backward()  # raised "a view of a leaf Variable ... in-place operation" on the packed layer
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    assert lora_grads and any(g is not None and g.abs().sum() > 0 for g in lora_grads)
    model.eval()
    with torch.no_grad():
        again = model(**enc).logits
    torch.testing.assert_close(again, before, rtol=0, atol=0)  # one numeric path: float32, unpacked


def test_qlora_runs_the_same_on_both_kinds_of_cpu(monkeypatch, tiny, tmp_path):
    """Train (validating after every epoch, so epochs 2 and 3 train after a validation pass), evaluate,
    predict and export the same QLoRA run on this CPU and on a simulated AVX512-BF16 one: the same numbers.
    The export check compares the float32 export with the run's unpacked 4-bit model computing in float32:
    equal to float32 rounding (below 1e-5; the packed bfloat16 kernel was 2e-3 off)."""
    from emotune import evaluate as ev

    results = {}
    for cpu in ("this", "avx512_bf16"):
        with monkeypatch.context() as patch:
            if cpu == "avx512_bf16":
                simulate_avx512_bf16(patch)
            root = make_project(tmp_path / cpu)
            name = train_run(root, tiny("bert"), "qlora", epochs=3)
            run = resolve_run(name, root)
            report = ev.evaluate_run(run.dataset, run.model, "qlora", "tuned", 2, root=root, device="cpu")
            trained = run.load(None)
            probs = pr.predict(run, TEXTS, trained=trained, show_progress=False).probabilities
            assert packed(trained.model) == []
            check = json.loads((ex.export(run, tmp_path / cpu / "export") / "export.json").read_text())["check"]
            assert check["max_abs_prob_diff"] < 1e-5 and check["label_agreement"] == 1.0, (cpu, check)
            results[cpu] = run.card["history"], report["test"], probs
    (history, test, probs), (history_bf16, test_bf16, probs_bf16) = results["this"], results["avx512_bf16"]
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]
    assert history_bf16 == history and test_bf16 == test
    torch.testing.assert_close(torch.as_tensor(probs_bf16), torch.as_tensor(probs), rtol=0, atol=0)


@pytest.mark.parametrize("adapter", ["qlora", "gen_qlora"])
def test_decoder_qlora_and_generative_qlora_train_the_same_on_both_kinds_of_cpu(adapter, monkeypatch, tiny,
                                                                                tmp_path):
    histories = {}
    for cpu in ("this", "avx512_bf16"):
        with monkeypatch.context() as patch:
            if cpu == "avx512_bf16":
                simulate_avx512_bf16(patch)
            plan, paths = prepare_run(tmp_path / cpu, tiny("llama"), adapter, lr=1e-2, epochs=2, batch_size=8)
            histories[cpu] = tr.train(plan, paths, log=QUIET)["history"]
    assert len(histories["this"]) == 2
    assert histories["this"][-1]["train_loss"] < histories["this"][0]["train_loss"]
    assert histories["avx512_bf16"] == histories["this"]
