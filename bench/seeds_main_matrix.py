"""More seeds of the committed main matrix, run by the pipeline itself: `dvc exp run -S 'seeds=[..]'` on a
few datasets, and the leaderboard's method-level verdicts (question 2, docs/seeds.md) that come out of it.

    python -m bench.seeds_main_matrix [--seeds 1,2] [--datasets emotion,tweet_eval_emotion] [--project .]
    python -m bench.seeds_main_matrix --from-exp ../emotune-seeds   # re-read a finished experiment only

Why a bench and not params.yaml: each extra seed costs what the main matrix costs (about 27 minutes per seed
for four datasets on 2 cores), and the default `make run` must stay one seed. So the committed leaderboard
says "cannot tell (one seed)" for method comparisons, and this bench records what three seeds say.

How: the project (a checkout whose `dvc repro` is up to date) is cloned beside itself (`<project>-seeds`, so
`fetch.mirror: ../shared/datasets` resolves the same), the clone uses the project's DVC cache (`dvc cache dir`,
local config), so the primary seed's runs are checked out, not retrained, and `dvc exp run` with the extra
seeds and the datasets trains only the new seeds' runs (`train_seeds@...`, `evaluate_seeds@...`) and reruns
plan and aggregate. The stages DVC ran are recorded from its output, and every primary-seed figure of the
experiment must equal the project's own leaderboard (the same runs, not retrained).
Writes metrics/bench/seeds_main_matrix.json: per dataset x adapter every seed's official metric, mean, sd
and the verdict against the best variant (Welch's t over seeds, emotune/seeds.py).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench import common, experiment


def seeded_rows(leaderboard: dict) -> list[dict]:
    """The runs with two or more seeds, as the aggregate stage wrote them (emotune/aggregate.py)."""
    return [r for r in leaderboard["rows"] if r.get("kind") == "run" and len(r.get("seeds") or {}) >= 2]


def compare_primary(rows: list[dict], project_rows: list[dict], seed: int) -> list[str]:
    """Runs whose primary-seed figure in the experiment differs from the project's leaderboard (should be none)."""
    own = {(r["dataset"], r["model"], r["adapter"]): r["official"] for r in project_rows if r.get("kind") == "run"}
    return [f"{r['dataset']}/{r['model']}/{r['adapter']}" for r in rows
            if own.get((r["dataset"], r["model"], r["adapter"])) != r["seeds"].get(str(seed))]


def summarise(rows: list[dict]) -> list[dict]:
    keep = ("dataset", "model", "adapter", "official_metric", "train_examples", "seeds", "seed_mean", "seed_sd",
            "method_best", "method_vs_best", "method_vs_best_detail")
    return [{k: r.get(k) for k in keep} for r in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=str(common.ROOT), help="the checkout whose main matrix gets seeds")
    parser.add_argument("--seeds", default="1,2", help="extra seeds (params `seeds`), comma-separated")
    parser.add_argument("--datasets", default="emotion,tweet_eval_emotion", help="comma-separated, among `datasets`")
    parser.add_argument("--workdir", help="the clone to run in (default: <project>-seeds beside the project)")
    parser.add_argument("--from-exp", metavar="WORKDIR", help="only read a finished experiment's clone")
    parser.add_argument("--out", help="the result file (default metrics/bench/seeds_main_matrix.json)")
    args = parser.parse_args(argv)
    project = Path(args.project).resolve()
    seeds = [int(s) for s in args.seeds.split(",")]
    datasets = args.datasets.split(",")
    import yaml

    params = yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))
    result = common.header("seeds_main_matrix", False)
    if args.from_exp:
        run = experiment.reread(Path(args.from_exp), common.result_path("seeds_main_matrix", False, args.out))
    else:
        workdir = Path(args.workdir).resolve() if args.workdir else experiment.default_workdir(project, "seeds")
        run = experiment.run_experiment(project, workdir, "seeds-" + "-".join(map(str, seeds)),
                                        {"seeds": seeds, "datasets": datasets})
    workdir, minutes, ran = run.workdir, run.minutes, run.stages_ran
    leaderboard = common.load_json(workdir / "metrics" / "leaderboard.json", "the experiment did not aggregate")
    project_rows = common.load_json(project / "metrics" / "leaderboard.json", "run `dvc repro` (or `dvc pull`) first")["rows"]
    rows = seeded_rows(leaderboard)
    if not rows:
        raise SystemExit(f"{workdir}/metrics/leaderboard.json: no run with two or more seeds")
    mismatched = compare_primary(rows, project_rows, params["seed"])
    result.update({
        "project": str(project), "project_commit": experiment.commit(workdir),
        "workdir": str(workdir), "primary_seed": params["seed"], "extra_seeds": seeds, "datasets": datasets,
        "train_examples": params["train"]["max_train_examples"], "epochs": params["train"]["epochs"],
        "experiment_minutes": minutes, "stages_ran": ran,
        "only_new_seeds_trained": all(not s.startswith(("train@", "evaluate@", "train_reference", "tokenize",
                                                        "audit", "clean", "fetch")) for s in ran) if ran else None,
        "primary_seed_differs_from_project": mismatched,
        "runs": summarise(rows)})
    for r in result["runs"]:
        values = ", ".join(f"{v:.3f}" for v in r["seeds"].values())
        print(f"{r['dataset']} {r['adapter']}: {r['seed_mean']:.3f} ± {r['seed_sd']:.3f} ({values}) "
              f"{r['method_vs_best']}")
    if mismatched:
        print(f"WARNING: the primary seed's figure differs from the project's leaderboard for {mismatched}")
    common.write_result(common.result_path("seeds_main_matrix", False, args.out), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
