"""The model card (README.md) of an exported run: what a person needs to use the model and to judge it.

Everything comes from files the pipeline wrote: the run card (models/.../run.json: plan, data checksums,
validation metrics, versions), the test evaluation (metrics/eval/...), the label-noise audit
(metrics/audit/<dataset>.json) and the export's own check (emotune/export.py). A missing report is said to
be missing, never guessed.
"""
from __future__ import annotations

import json

from emotune.adapter_table import adapter_entry
from emotune.atomic import read_json
from emotune.config import load_params
from emotune.errors import EmotuneError
from emotune.runs import Run


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value).replace("|", "\\|")


def _numbers(obj, prefix: str = "") -> list[tuple[str, float]]:
    """Numeric leaves of a metrics report as (dotted key, value), two levels deep; lists are skipped
    (thresholds, per-class arrays)."""
    out = []
    for key, value in (obj or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, bool) or key == "bootstrap":  # the interval's settings, not a metric
            continue
        if isinstance(value, (int, float)):
            out.append((name, value))
        elif isinstance(value, dict) and not prefix:
            out += _numbers(value, f"{name}.")
    return out


def _dataset_description(run: Run) -> str:
    try:
        spec = load_params(run.root / "params.yaml").dataset(run.dataset)
    except (EmotuneError, FileNotFoundError):
        return ""
    return spec.description


def usage(run: Run, info: dict) -> str:
    norm = info["normalisation"]
    steps = ["HTML entities unescaped" if norm["html_unescape"] else None,
             f"Unicode {norm['unicode_form']}" if norm["unicode_form"] != "none" else None,
             f"user mentions -> `{norm['mask_mentions']}`" if norm["tweets"] and norm["mask_mentions"] else None,
             f"URLs -> `{norm['mask_urls']}`" if norm["tweets"] and norm["mask_urls"] else None,
             "lower-cased" if norm["lowercase"] else None,
             "whitespace collapsed" if norm["collapse_whitespace"] else None]
    normalisation = ", ".join(s for s in steps if s) or "none"
    if info.get("format") == "onnx":
        body = onnx_usage(info)
    elif info["kind"] == "causal_lm":
        prompt = info["prompt"]
        body = f"""A causal language model that answers with the label word(s). No emotune code is needed:

```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("<this folder>")
model = AutoModelForCausalLM.from_pretrained("<this folder>")
instruction = {json.dumps(prompt["instruction"])}
text = "i can't believe how lucky we are"
"""
        system = prompt.get("system")
        if prompt["chat_template"]:
            messages = '[{"role": "user", "content": f"{instruction}\\n\\nText: {text}"}]'
            if system and prompt.get("system_in_user"):  # the template has no system role
                body += f"system = {json.dumps(system)}\n"
                messages = '[{"role": "user", "content": f"{system}\\n\\n{instruction}\\n\\nText: {text}"}]'
            elif system:
                body += f"system = {json.dumps(system)}\n"
                messages = '[{"role": "system", "content": system}, ' + messages[1:]
            body += f"""prompt = tok.apply_chat_template({messages},
                               add_generation_prompt=True, tokenize=False)
ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
"""
        else:
            head = ""
            if system:
                body += f"system = {json.dumps(system)}\n"
                head = "{system}\\n\\n"
            body += f"""ids = tok(f"{{tok.bos_token or ''}}{head}{{instruction}}\\nText: {{text}}\\nAnswer:", add_special_tokens=False,
          return_tensors="pt")
"""
        body += f"""out = model.generate(**ids, do_sample=False, max_new_tokens={prompt["max_new_tokens"]})
print(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
```

An answer that is not one of the labels{' (or a comma-separated list of them, or "none")' if info['task'] == 'multi_label' else ''}
is invalid: count it as such, do not map it to a nearby label. emotune's own
`emotune predict {run.name}` does this parsing, and builds the prompt's token ids from its parts
(`emotune/prompts.py`), exactly as in training; tokenizing the whole prompt at once, as above, can split a
part boundary differently with some tokenizers."""
    elif info["task"] == "multi_label":
        body = f"""```python
from transformers import pipeline
clf = pipeline("text-classification", model="<this folder>", top_k=None)   # sigmoid per label
thresholds = {json.dumps(dict(zip(info["labels"], [round(t, 4) for t in info["thresholds"]])))}
scores = clf("i can't believe how lucky we are", truncation=True)
labels = [s["label"] for s in scores if s["score"] > thresholds[s["label"]]]
```

The per-label thresholds were tuned on validation by emotune's evaluate stage (also in `export.json`)."""
    else:
        body = """```python
from transformers import pipeline
clf = pipeline("text-classification", model="<this folder>", top_k=None)   # softmax over the labels
print(clf("i can't believe how lucky we are", truncation=True))
```"""
    return (f"{body}\n\n**Normalise texts first**, as the training data was: {normalisation} "
            f"(emotune's `emotune/text.py` `normalise`; `emotune predict` does it). Texts are cut at "
            f"{info['max_length']} tokens (`truncation=True`).")


def onnx_usage(info: dict) -> str:
    """An ONNX export: emotune runs it without torch; onnxruntime + tokenizers alone do too."""
    decide = ("thresholds = " + json.dumps([round(t, 4) for t in info["thresholds"]]) +
              "\nprobs = 1 / (1 + np.exp(-logits))          # sigmoid per label\n"
              "labels = [[name for name, p, t in zip(names, row, thresholds) if p >= t] for row in probs]"
              if info["task"] == "multi_label" else
              "probs = np.exp(logits - logits.max(1, keepdims=True)); probs /= probs.sum(1, keepdims=True)\n"
              "labels = [names[i] for i in probs.argmax(1)]")
    return f"""```bash
emotune predict <this folder> --text "i can't believe how lucky we are"   # no torch imported
emotune serve <this folder>                                              # HTTP JSON API on 127.0.0.1
```

or with onnxruntime and tokenizers alone:

```python
import json, numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
names = json.load(open("<this folder>/export.json"))["labels"]
tok = Tokenizer.from_file("<this folder>/tokenizer.json")
tok.enable_truncation({info["max_length"]}); tok.enable_padding(pad_id={info.get("pad_token_id") or 0})
enc = tok.encode_batch(["i can't believe how lucky we are"])
feed = {{"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64)}}
logits = ort.InferenceSession("<this folder>/model.onnx").run(["logits"], feed)[0]
{decide}
```"""


def hub_metadata(run: Run, info: dict) -> str:
    """The card's YAML front matter, as the Hub reads it (huggingface_hub ModelCardData): library, pipeline
    tag, tags and the Hub base model when there is one (no licence: the training data's licence applies)."""
    from huggingface_hub import ModelCardData

    provenance = run.card.get("model_provenance", {})
    causal = info["kind"] == "causal_lm"
    tags = ["emotune", "emotion", run.dataset, run.adapter, info["task"].replace("_", "-")]
    library = "onnx" if info.get("format") == "onnx" else "transformers"
    data = ModelCardData(library_name=library, pipeline_tag="text-generation" if causal else "text-classification",
                         tags=tags, base_model=provenance.get("hub_id"))
    return f"---\n{data.to_yaml()}\n---\n"


def model_card(run: Run, info: dict) -> str:
    """The README.md: Hub front matter, then use, labels, data, training, metrics, label noise, limits."""
    return hub_metadata(run, info) + card_body(run, info)


def card_body(run: Run, info: dict) -> str:
    card = run.card
    plan, metrics, data = run.plan, card["metrics"], card["data"]
    settings = plan.to_json()  # the settings table lists what the plan file holds
    provenance = card.get("model_provenance", {})
    title = f"# {run.dataset}: {run.model} + {run.adapter} (emotune)"
    description = _dataset_description(run)
    kind = ("merged causal LM (generates the label words)" if info["kind"] == "causal_lm" else
            "sequence classifier (`AutoModelForSequenceClassification`)")
    qlora = {"dequantized": " The LoRA update was merged into the dequantised NF4 base weights, so the model "
                            "computes what the evaluated 4-bit model computes, in float32.",
             "original": " The LoRA update was merged into the original float32 base weights, not the NF4 ones "
                         "it was trained on; see the export check for what that changes."}.get(info["qlora_base"], "")
    weights = "float32 safetensors"
    if info.get("format") == "onnx":
        kind = "sequence classifier"
        weights = ("ONNX (`model.onnx`, int8 weights by onnxruntime dynamic quantisation)" if info.get("quantize")
                   else "ONNX (`model.onnx`, float32)")
    parts = [title, "",
             f"Exported from the emotune run `{run.name}` (`models/{run.name}/`) with `emotune export`: "
             f"a standalone {kind} in {weights}.{qlora}", "",
             "## Use", "", usage(run, info), ""]

    labels = info["labels"]
    rows = [[i, label] + ([round(info["thresholds"][i], 4)] if info["thresholds"] else []) for i, label in
            enumerate(labels)]
    parts += ["## Labels", "", f"Task: {info['task'].replace('_', '-')}.", "",
              _table(["id", "label"] + (["threshold"] if info["thresholds"] else []), rows), ""]

    parts += ["## Data", "", f"Dataset `{run.dataset}`" + (f": {description}." if description else "."),
              f"Official metric: {plan.dataset.official_metric}.", ""]
    if data.get("source_rows"):
        parts += ["Rows after cleaning and audit: " + ", ".join(f"{k} {v}" for k, v in data["source_rows"].items())
                  + f"; trained on {metrics.get('train_examples')} train rows "
                  f"(train.max_train_examples: {plan.train.max_train_examples}).", ""]
    if data.get("source_checksums"):
        parts += ["Raw files (sha256):", "", _table(["file", "sha256"], [[f"`{k}`", f"`{v}`"] for k, v in
                                                                         data["source_checksums"].items()]), ""]
    if data.get("tokenized"):
        parts += ["Tokenized splits the run read (sha256):", "",
                  _table(["file", "sha256"], [[f"`{k}`", f"`{v}`"] for k, v in data["tokenized"].items()]), ""]

    weights = provenance.get("weights") or provenance.get("files") or {}
    base = [f"Base model: `{plan.model['name']}` ({provenance.get('source', plan.model.get('kind'))}"
            + (f", {provenance['hub_id']}@{provenance.get('revision')}" if provenance.get("hub_id") else "")
            + (f"; {provenance['description']}" if provenance.get("description") else "") + ")."]
    base += [f"Base weights `{k}` sha256 `{v}`." for k, v in weights.items()]
    parts += ["## Training", "", *base, "",
              _table(["setting", "value"],
                     [["adapter", run.adapter], *[[f"adapter.{k}", v] for k, v in settings["adapter"]["hparams"].items()],
                      *[[f"train.{k}", v] for k, v in settings["train"].items()], ["seed", plan.seed],
                      ["epochs run (best)", f"{metrics.get('epochs_run')} ({metrics.get('best_epoch')})"],
                      ["parameters trained / total", f"{metrics.get('params', {}).get('trainable')} / "
                                                     f"{metrics.get('params', {}).get('total')}"],
                      ["versions", ", ".join(f"{k} {v}" for k, v in card.get("versions", {}).items())]]), ""]

    parts += ["## Metrics", ""]
    evaluation = run.path("eval")
    if evaluation.exists():
        values = [(k, v) for k, v in _numbers(read_json(evaluation)) if "threshold" not in k]
        parts += [f"Test split (`{evaluation.relative_to(run.root)}`):", "", _table(["metric", "value"], values), ""]
    else:
        parts += [f"Test split: not evaluated yet (`{evaluation.relative_to(run.root)}` is missing; `dvc repro` "
                  f"runs the evaluate stage).", ""]
    parts += [f"Validation, best epoch (`models/{run.name}/run.json`):", "",
              _table(["metric", "value"], list(metrics.get("val", {}).items())), ""]
    check = info["check"]
    if check["skipped"]:
        parts += [f"Export check: skipped ({check['skipped']}).", ""]
    else:
        reference = "the 4-bit model" if adapter_entry(run.adapter).quantized else "the run's (unmerged) model"
        rows = [["test rows compared", check["rows"]], [f"{check['metric']}, {reference}", check["run_metric"]],
                [f"{check['metric']}, this export", check["export_metric"]],
                ["same predicted label(s)" if info["kind"] != "causal_lm" else "same answer", check["label_agreement"]]]
        if check["max_abs_prob_diff"] is not None:
            rows += [["max / mean abs. probability difference",
                      f"{check['max_abs_prob_diff']:.2e} / {check['mean_abs_prob_diff']:.2e}"]]
        if "metric_loss_points" in check:  # ONNX exports: the whole test split, and the bound they passed
            rows += [[f"{check['metric']} lost, points (bound)",
                      f"{check['metric_loss_points']:.2f} ({check['max_metric_loss_points']})"]]
        where = "all" if "metric_loss_points" in check else "the first"
        parts += [f"Export check: this model vs {reference} on {where} {check['rows']} rows of "
                  f"`{check['source']}`:", "", _table(["", "value"], rows), ""]

    parts += ["## Known label noise", ""]
    audit_path = run.root / "metrics" / "audit" / f"{run.dataset}.json"
    if audit_path.exists():
        audit = read_json(audit_path)
        parts += [f"emotune's cleanlab audit (`metrics/audit/{run.dataset}.json`, out-of-fold `{audit.get('model')}` "
                  f"model) flagged {audit.get('issues_found')} train+validation rows "
                  f"({_fmt(audit.get('issue_rate'))} of them) as likely mislabelled; label health score "
                  f"{_fmt(audit.get('health_score'))}. Audit action: `{audit.get('action')}` (`drop` removes the "
                  f"worst flagged train rows before training; `report` trains on them).", "",
                  _table(["class", "estimated noise rate"], sorted(audit.get("class_noise_rate", {}).items(),
                                                                   key=lambda kv: -kv[1])), ""]
    else:
        parts += [f"No audit report (`metrics/audit/{run.dataset}.json` is missing).", ""]

    parts += ["## Limits", "",
              "- Trained and evaluated on English text of one dataset; other domains, languages and registers "
              "will score lower.",
              f"- The labels are this dataset's {len(labels)} classes; a text expressing none of them still gets "
              "scores over them" + (" (multi-label: possibly no label above its threshold)."
                                    if info["task"] == "multi_label" else "."),
              "- Gold labels are noisy (see above): metrics are bounded by annotation quality and part of the "
              "errors are label errors.",
              f"- Texts longer than {info['max_length']} tokens are truncated; texts must be normalised as above.",
              "- Emotion recognition is uncertain by nature; do not use it alone for decisions about people.",
              "- The training data's licence applies (see the dataset's SOURCE.md); SemEval data may not be "
              "redistributed."]
    return "\n".join(parts) + "\n"
