"""explain: token attributions for a few test examples per class of a trained classifier run.

    emotune explain emotion/minilm/lora [--per-class 2] [--steps 32]
    dvc repro explain/dvc.yaml        # every run of the main matrix, as DVC stages (off the default path)

Writes metrics/explain/<dataset>/<model>/<adapter>/:
  explanations.html   each example's tokens coloured by attribution (red: pushes towards the class,
                      blue: away from it), with its gold and predicted labels; open it in a browser
  attributions.png    the same picture as an image (a DVC plot of explain/dvc.yaml: `dvc plots show`)
  attributions.json   the numbers: tokens, their text spans, attributions, convergence deltas

Method: Captum's LayerIntegratedGradients over the input embedding layer, explaining the probability of
the class each example was picked for (softmax for single-label runs, that class's sigmoid for
multi-label ones). Chosen over SHAP's text explainer because it is deterministic (no sampling), costs one
batch of `--steps` forward+backward passes per example (SHAP's partition explainer needs hundreds of
forward passes for a sentence), works unchanged through peft adapters and 4-bit QLoRA layers (it only
needs gradients to the embeddings), and comes with a check: attributions sum to p(input) - p(baseline),
and the gap (the convergence delta) is reported per example. The baseline replaces every ordinary token
by the pad token and keeps the special tokens ([CLS], [SEP], ...) in place, so attributions measure what
the words contribute, not the sentence frame.

SHAP (`--method shap`, or `both` for the two side by side on the same page): shap's partition explainer
with its Text masker over the run's own prediction pipeline (emotune/predict.py classifier_probabilities:
the tokenization and batches the evaluate stage scored with), explaining the same probability. Its
values add up to p(text) - p(every token masked) exactly (the gap is reported as the delta); it costs
`--shap-evals` forward passes per example (300 by default) and, unlike integrated gradients, needs no
gradients, so it explains any classifier run the same way.

Examples come from the test split as the pipeline prepared it (data/audited/<dataset>/test.parquet,
already normalised by clean): per class, `--per-class` rows carrying that gold label, picked with a seeded
generator. Generative runs (gen_lora, gen_qlora) are refused: their output is a generated word sequence,
not one differentiable score per class.
"""
from __future__ import annotations

import argparse
import html
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from emotune.adapter_table import names  # noqa: E402
from emotune.atomic import atomic_dir  # noqa: E402
from emotune.errors import EmotuneError, did_you_mean, run_cli
from emotune.paths import project_root  # noqa: E402
from emotune.runs import Run, add_run_arguments, quiet_transformers, run_from_args, thresholds  # noqa: E402

FILES = ("explanations.html", "attributions.png", "attributions.json")
METHODS = ("ig", "shap", "both")
METHOD_NAMES = {"ig": "integrated gradients (Captum)", "shap": "SHAP (partition explainer)"}


@dataclass
class Explanation:
    id: str
    text: str
    target: str  # the class explained (the one the example was picked for)
    gold: list[str]
    predicted: list[str]
    probability: float  # of the target class
    tokens: list[str]  # the text span of each token ("" for special tokens)
    attributions: list[float]  # per token, summed over the embedding dimensions
    delta: float  # convergence delta: sum(attributions) - (p(input) - p(baseline))
    method: str = "ig"  # ig (Captum integrated gradients) | shap


def explain_dir(run: Run) -> Path:
    return run.root / "metrics" / "explain" / run.dataset / run.model / run.adapter


def choose_examples(run: Run, per_class: int, seed: int) -> list[tuple[dict, str]]:
    """(test row, class) pairs: up to `per_class` rows with each gold class, seeded, no row twice."""
    import pandas as pd

    path = run.root / "data" / "audited" / run.dataset / "test.parquet"
    if not path.exists():
        raise EmotuneError(f"{path.relative_to(run.root)}: missing; run the pipeline up to audit first (`dvc repro`)")
    frame = pd.read_parquet(path)
    rng = np.random.default_rng(seed)
    chosen, used = [], set()
    for label in run.labels:
        rows = [i for i, labels in enumerate(frame["labels"]) if label in list(labels) and i not in used]
        for i in sorted(rng.choice(len(rows), size=min(per_class, len(rows)), replace=False)) if rows else []:
            used.add(rows[i])
            chosen.append(({"id": str(frame["id"].iloc[rows[i]]), "text": frame["text"].iloc[rows[i]],
                            "labels": list(frame["labels"].iloc[rows[i]])}, label))
    if not chosen:
        raise EmotuneError(f"{path}: no test row carries any of the labels {run.labels}")
    return chosen


def attribute(trained, run: Run, row: dict, target: str, steps: int, cut: np.ndarray | None = None) -> Explanation:
    """Layer integrated gradients of p(target) with respect to the input embeddings. `cut`: the multi-label
    run's thresholds (emotune/predict.py `thresholds`), for the predicted labels shown beside."""
    import torch
    from captum.attr import LayerIntegratedGradients

    model, tokenizer = trained.model, trained.tokenizer
    index = run.labels.index(target)
    multi = run.multi_label

    def score(input_ids, attention_mask):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
        return probs[:, index]

    enc = tokenizer(row["text"], truncation=True, max_length=run.max_length, return_tensors="pt",
                    return_offsets_mapping=True, return_special_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    special = enc["special_tokens_mask"][0].bool()
    baseline = torch.where(special, ids[0], torch.tensor(tokenizer.pad_token_id)).unsqueeze(0)
    lig = LayerIntegratedGradients(score, model.get_input_embeddings())
    attributions, delta = lig.attribute(ids, baselines=baseline, additional_forward_args=(mask,), n_steps=steps,
                                        internal_batch_size=steps, return_convergence_delta=True)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()[0]
    probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).numpy()
    predicted = [run.labels[j] for j in np.flatnonzero(probs > cut)] if multi else [run.labels[int(probs.argmax())]]
    spans = [row["text"][a:b] if not s else "" for (a, b), s in zip(enc["offset_mapping"][0].tolist(), special)]
    return Explanation(row["id"], row["text"], target, row["labels"], predicted, float(probs[index]), spans,
                       attributions.sum(-1)[0].detach().float().tolist(), float(delta.abs().item()))


def shap_explainer(trained, run: Run, batch_size: int = 64):
    """shap's text explainer over the run's prediction pipeline: texts -> class probabilities, tokenized
    and batched exactly as the evaluate stage did (emotune/predict.py classifier_probabilities)."""
    import shap

    from emotune.predict import classifier_probabilities

    def probabilities(texts) -> np.ndarray:
        return classifier_probabilities(trained, run, [str(t) for t in texts], batch_size, show_progress=False)

    return shap.Explainer(probabilities, shap.maskers.Text(trained.tokenizer), output_names=list(run.labels),
                          algorithm="partition")


def shap_attribute(explainer, trained, run: Run, row: dict, target: str, max_evals: int,
                   cut: np.ndarray | None = None) -> Explanation:
    """SHAP values of p(target) for each token of the text (masked tokens: the tokenizer's mask token, or
    "..." when it has none). delta: |sum(values) + p(all masked) - p(text)|, zero up to float error."""
    from emotune.predict import classifier_probabilities

    index = run.labels.index(target)
    values = explainer([row["text"]], max_evals=max_evals, silent=True)
    probs = classifier_probabilities(trained, run, [row["text"]], 1, show_progress=False)[0]
    contributions = values.values[0][:, index].astype(float)
    tokens = [str(t).strip() for t in values.data[0]]  # "" for the special tokens the masker keeps
    total = float(contributions.sum() + np.asarray(values.base_values[0])[index])
    multi = run.multi_label
    predicted = [run.labels[j] for j in np.flatnonzero(probs > cut)] if multi else [run.labels[int(probs.argmax())]]
    return Explanation(row["id"], row["text"], target, row["labels"], predicted, float(probs[index]), tokens,
                       contributions.tolist(), abs(total - float(probs[index])), method="shap")


# ---------------------------------------------------------------------------------------------
# Pictures
# ---------------------------------------------------------------------------------------------
def _rgba(value: float, scale: float) -> tuple[float, float, float, float]:
    """Red for positive, blue for negative attributions; opacity relative to the example's largest."""
    strength = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    return (0.86, 0.15, 0.15, 0.85 * strength) if value >= 0 else (0.15, 0.35, 0.86, 0.85 * strength)


def _css(value: float, scale: float) -> str:
    r, g, b, a = _rgba(value, scale)
    return f"rgba({r * 255:.0f},{g * 255:.0f},{b * 255:.0f},{a:.2f})"


def _scale(e: Explanation) -> float:
    return max((abs(a) for a, t in zip(e.attributions, e.tokens) if t), default=0.0)


def _pieces(e: Explanation) -> list[tuple[str, float]]:
    """(text, attribution) in reading order, with the spaces between tokens as zero-attribution pieces."""
    pieces, end = [], 0
    for token, value in zip(e.tokens, e.attributions):
        if not token:
            continue
        start = e.text.find(token, end)
        if start > end:
            pieces.append((e.text[end:start], 0.0))
        pieces.append((token, value))
        end = start + len(token) if start >= 0 else end
    return pieces


def _methods(explanations: list[Explanation]) -> list[str]:
    return list(dict.fromkeys(e.method for e in explanations))


def render_html(run: Run, explanations: list[Explanation], steps: int, shap_evals: int | None = None) -> str:
    """Per class, per example: the header, then one coloured line per method (IG and/or SHAP)."""
    methods = _methods(explanations)
    blocks = []
    for label in run.labels:
        items = [e for e in explanations if e.target == label]
        if not items:
            continue
        blocks.append(f"<h2>{html.escape(label)}</h2>")
        for key in dict.fromkeys(e.id for e in items):
            same = [e for e in items if e.id == key]
            first = same[0]
            verdict = "right" if first.target in first.predicted else "wrong"
            lines = []
            for e in same:
                spans = "".join(f'<span title="{value:+.4f}" style="background:{_css(value, _scale(e))}">'
                                f'{html.escape(text)}</span>' for text, value in _pieces(e))
                tag = f'<span class="method">{e.method.upper()}</span>' if len(methods) > 1 else ""
                lines.append(f'<div class="text">{tag}{spans} <span class="delta">delta {e.delta:.1e}</span></div>')
            blocks.append(
                f'<div class="ex"><div class="meta">{html.escape(first.id)} · gold: {html.escape(", ".join(first.gold))} · '
                f'predicted: <b class="{verdict}">{html.escape(", ".join(first.predicted) or "(none)")}</b> · '
                f'p({html.escape(label)}) = {first.probability:.3f}</div>{"".join(lines)}</div>')
    how = []
    if "ig" in methods:
        how.append(f"IG: layer integrated gradients over the input embeddings, {steps} steps, baseline: pad "
                   f"tokens; delta is the gap between the attributions' sum and p(text) - p(baseline)")
    if "shap" in methods:
        how.append(f"SHAP: shap's partition explainer with a text masker over the run's prediction pipeline, "
                   f"{shap_evals} evaluations per text; its values add up to p(text) - p(all tokens masked), "
                   f"delta is the gap")
    title = f"Token attributions: {run.name}"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }}
.ex {{ margin: 0.8em 0; padding: 0.5em; border: 1px solid #ddd; border-radius: 4px; }}
.meta {{ font-size: 0.85em; color: #555; margin-bottom: 0.3em; }}
.text {{ font-size: 1.1em; line-height: 1.8; }}
.text span {{ border-radius: 3px; padding: 1px 0; }}
.right {{ color: #1a7f37; }} .wrong {{ color: #b42318; }}
.method {{ font-size: 0.7em; color: #555; display: inline-block; width: 3.5em; }}
.delta {{ font-size: 0.7em; color: #888; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Each text is coloured by how much each token moves the model's probability of the class above it
(<span style="background:rgba(219,38,38,.8)">&nbsp;red&nbsp;</span>: towards the class,
<span style="background:rgba(38,89,219,.8)">&nbsp;blue&nbsp;</span>: away from it; hover a token for its value).
{'. '.join(how)} (small is good). Examples: test rows with the class as gold label.</p>
{''.join(blocks)}
</body></html>
"""


def render_png(run: Run, explanations: list[Explanation], path: Path, width_chars: int = 110) -> None:
    """The explanations as one image: per example a header line and the coloured text, in a monospace font
    so that token positions follow from character counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines: list[list[tuple[str, float, float]] | str] = []  # header strings, or rows of (text, value, scale)
    for e in explanations:
        scale = _scale(e)
        lines.append(f"[{e.target}] {e.id}  gold: {', '.join(e.gold)}  predicted: {', '.join(e.predicted) or '-'}"
                     f"  p={e.probability:.2f}  ({e.method.upper()})")
        row, used = [], 0
        for text, value in _pieces(e):
            if used + len(text) > width_chars and row:
                lines.append(row)
                row, used = [], 0
                text = text.lstrip()
            row.append((text, value, scale))
            used += len(text)
        lines.append(row)
    height = 0.28 * len(lines) + 0.4
    fig = plt.figure(figsize=(0.085 * width_chars + 0.6, height), dpi=110)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width_chars + 6)
    ax.set_ylim(len(lines) + 1, 0)
    ax.axis("off")
    for y, line in enumerate(lines, 1):
        if isinstance(line, str):
            ax.text(1, y, line, family="monospace", fontsize=8, color="#555", va="center")
            continue
        x = 1
        for text, value, scale in line:
            ax.text(x, y, text, family="monospace", fontsize=9, va="center",
                    bbox=dict(boxstyle="square,pad=0.05", facecolor=_rgba(value, scale), edgecolor="none"))
            x += len(text)
    fig.savefig(path)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Command
# ---------------------------------------------------------------------------------------------
def explain(run: Run, per_class: int = 2, steps: int = 32, seed: int = 0, out: Path | None = None,
            trained=None, method: str = "ig", shap_evals: int = 300) -> Path:
    """Attributions of `per_class` test examples per class by integrated gradients (`ig`), SHAP (`shap`)
    or both, written as the page, the picture and the JSON."""
    if run.generative:
        raise EmotuneError(f"{run.name}: explain covers classifier runs; a generative run ({run.adapter}) answers "
                           f"with generated words, not one score per class to attribute. Explain a "
                           f"{'/'.join(names(generative=False))} run of the same model instead")
    if per_class < 1 or steps < 2:
        raise EmotuneError("--per-class must be >= 1 and --steps >= 2")
    if method not in METHODS:
        raise EmotuneError(f"--method {method!r}{did_you_mean(method, METHODS)}; choose ig, shap or both")
    if method != "ig" and shap_evals < 10:
        raise EmotuneError(f"--shap-evals must be >= 10, got {shap_evals}")
    import torch

    examples = choose_examples(run, per_class, seed)
    trained = trained or run.load()
    torch.manual_seed(seed)
    cut = thresholds(run)
    explanations = []
    if method in ("ig", "both"):
        explanations += [attribute(trained, run, row, label, steps, cut) for row, label in examples]
    if method in ("shap", "both"):
        explainer = shap_explainer(trained, run)
        explanations += [shap_attribute(explainer, trained, run, row, label, shap_evals, cut)
                         for row, label in examples]
    described = {"ig": "captum.LayerIntegratedGradients (input embeddings)",
                 "shap": f"shap.PartitionExplainer + Text masker over the run's pipeline, max_evals={shap_evals}"}
    out = Path(out) if out is not None else explain_dir(run)
    with atomic_dir(out) as tmp:
        (tmp / "explanations.html").write_text(render_html(run, explanations, steps, shap_evals), encoding="utf-8")
        render_png(run, explanations, tmp / "attributions.png")
        (tmp / "attributions.json").write_text(json.dumps(
            {"run": run.name, "method": " + ".join(described[m] for m in _methods(explanations)), "steps": steps,
             "baseline": "pad token for every non-special token", "seed": seed,
             **({"shap_evals": shap_evals} if method != "ig" else {}),
             "examples": [asdict(e) for e in explanations]}, indent=1, ensure_ascii=False) + "\n")
    return out


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description="Token attributions for test examples of a trained run")
    add_run_arguments(parser)
    parser.add_argument("--per-class", type=int, default=2, help="test examples per class")
    parser.add_argument("--method", default="ig", help="ig (Captum integrated gradients, default) | shap | both")
    parser.add_argument("--steps", type=int, default=32, help="integration steps (more: smaller delta, slower)")
    parser.add_argument("--shap-evals", type=int, default=300, help="SHAP: model evaluations per example")
    parser.add_argument("--seed", type=int, default=0, help="which test examples are picked")
    parser.add_argument("--out", type=Path, help="default metrics/explain/<dataset>/<model>/<adapter>")
    args = parser.parse_args(argv)
    run = run_from_args(args, project_root())  # the project the command runs in (emotune/paths.py)
    quiet_transformers()
    out = explain(run, args.per_class, args.steps, args.seed, args.out, method=args.method,
                  shap_evals=args.shap_evals)
    print(f"explain {run.name}: -> {out / 'explanations.html'}")


if __name__ == "__main__":
    run_cli(main)
