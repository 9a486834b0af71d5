"""audit: data/clean/<dataset> -> data/audited/<dataset> + metrics/audit/<dataset>.json.

    python -m stages.audit <dataset>

The DVC stage's entry point; the work, and why it is done this way, is emotune/audit.py.
"""
from __future__ import annotations

import pandas as pd

from emotune.artifacts import load_splits, save_splits
from emotune.atomic import atomic_dir, read_json, write_atomic, write_json
from emotune.audit import audit_splits, review_markdown
from emotune.errors import run_cli
from emotune.paths import data_dir, metrics_path
from emotune.stage_args import params_and_dataset


def main(argv: list[str]) -> None:
    params, spec = params_and_dataset(argv, "Audit one cleaned dataset for label noise")
    clean_dir = data_dir("clean", spec.name)
    splits = load_splits(clean_dir)
    audited, report, review = audit_splits(splits, spec, params.audit, params.seed)
    meta = read_json(clean_dir / "meta.json") | {"rows": {s: len(f) for s, f in audited.items()}}
    with atomic_dir(data_dir("audited", spec.name)) as out:
        save_splits(out, audited)
        write_json(out / "meta.json", meta)
        (out / "review.md").write_text(review_markdown(review, spec))
    noise = pd.DataFrame({"class": list(report["class_noise_rate"]),
                          "noise_rate": list(report["class_noise_rate"].values())})
    write_atomic(metrics_path("audit", spec.name, "_class_noise.csv"), lambda p: noise.to_csv(p, index=False))
    write_json(metrics_path("audit", spec.name), report)
    print(f"audit {spec.name}: {report['issues_found']} issues ({report['issue_rate']:.1%}), "
          f"health {report['health_score']:.3f}, review: {data_dir('audited', spec.name) / 'review.md'}")


if __name__ == "__main__":
    run_cli(main)
