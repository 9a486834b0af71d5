"""Wall time of each stage group of a real `dvc repro` (or `make run`), from its time-stamped output, with
the load average sampled beside it: how long the default pipeline takes and where the time goes.

    # run the pipeline with each output line stamped, and the load sampled once a minute:
    ( while sleep 60; do echo "$(date -u +%H:%M:%S) $(cat /proc/loadavg)"; done ) > load.log &
    make run 2>&1 | while IFS= read -r l; do echo "$(date -u +%H:%M:%S) $l"; done > run.log
    python -m bench.pipeline_run --log run.log --load-log load.log [--log explain.log ...]

A stage runs from its "Running stage '<name>'" line to the next one (the last to the log's last line);
a group is every stage of one dvc.yaml name (train@... for the main matrix, train_reference@... for the
reference group). Writes metrics/bench/pipeline_run.json.
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench import common

STAMP = re.compile(r"^(\d\d):(\d\d):(\d\d) ?(.*)$")
RUNNING = re.compile(r"Running stage '(?:[^']*:)?([^'@]+)(?:@([^']*))?'")
# A stage DVC did not run: its deps (code, data, params) hash as in dvc.lock and its outputs are there
# (e.g. `cache: false` outputs committed in git by an earlier run of the same code and data).
SKIPPED = re.compile(r"Stage '(?:[^']*:)?([^'@]+)(?:@([^']*))?' didn't change, skipping")


def seconds(match: re.Match) -> int:
    return int(match.group(1)) * 3600 + int(match.group(2)) * 60 + int(match.group(3))


def stage_spans(lines: list[str]) -> tuple[list[dict], int]:
    """([{stage, item, start_s, end_s}] in log order, the first stamp in seconds of the day); span times
    are seconds since the first stamped line, counting past midnight."""
    spans, base, last, offset = [], None, None, 0
    for line in lines:
        stamp = STAMP.match(line)
        if not stamp:
            continue
        t = seconds(stamp)
        if last is not None and t + offset < last:
            offset += 86400
        t += offset
        base = t if base is None else base
        last = t
        if running := RUNNING.search(stamp.group(4)):
            if spans:
                spans[-1]["end_s"] = t - base
            spans.append({"stage": running.group(1), "item": running.group(2), "start_s": t - base})
    if not spans:
        raise SystemExit("no \"Running stage '...'\" line with a HH:MM:SS stamp in the log: stamp each "
                         "line of `dvc repro`'s output as the module docstring shows")
    spans[-1]["end_s"] = last - base
    return spans, base


def skipped_stages(lines: list[str]) -> dict[str, int]:
    """{group: how many of its stages DVC skipped as unchanged}."""
    out: dict[str, int] = {}
    for line in lines:
        if skipped := SKIPPED.search(line):
            out[skipped.group(1)] = out.get(skipped.group(1), 0) + 1
    return out


def load_samples(lines: list[str]) -> list[tuple[int, float]]:
    """(seconds of the day, 1-minute load average) of each `HH:MM:SS <contents of /proc/loadavg>` line."""
    out = []
    for line in lines:
        stamp = STAMP.match(line)
        if stamp and stamp.group(4):
            out.append((seconds(stamp), float(stamp.group(4).split()[0])))
    return out


def groups(spans: list[dict], base: int, load: list[tuple[int, float]]) -> list[dict]:
    out: dict[str, dict] = {}
    for span in spans:
        g = out.setdefault(span["stage"], {"group": span["stage"], "stages": 0, "busy_s": 0,
                                           "first_start_s": span["start_s"], "last_end_s": span["end_s"]})
        g["stages"] += 1
        g["busy_s"] += span["end_s"] - span["start_s"]
        g["last_end_s"] = span["end_s"]
    for g in out.values():
        # a sample's time since the log's first stamp, past midnight too
        inside = [value for t, value in load if g["first_start_s"] <= (t - base) % 86400 <= g["last_end_s"]]
        g["load_1min_mean"] = round(sum(inside) / len(inside), 2) if inside else None
        g["busy_min"] = round(g["busy_s"] / 60, 1)
    return list(out.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", action="append", required=True,
                        help="stamped output of one `dvc repro` (repeat for several, e.g. make run then explain)")
    parser.add_argument("--load-log", help="stamped /proc/loadavg samples")
    parser.add_argument("--out", help="JSON path (default metrics/bench/pipeline_run.json)")
    args = parser.parse_args(argv)
    load = load_samples(Path(args.load_log).read_text().splitlines()) if args.load_log else []
    result = common.header("pipeline_run", False)
    result["logs"] = []
    for log in args.log:
        lines = Path(log).read_text(errors="replace").splitlines()
        spans, base = stage_spans(lines)
        rows = groups(spans, base, load)
        skipped = skipped_stages(lines)
        wall = spans[-1]["end_s"]
        # before the first stage: `make run`'s install (venv, requirements, the optional models)
        setup = spans[0]["start_s"]
        result["logs"].append({"log": Path(log).name, "wall_min": round(wall / 60, 1), "stages": len(spans),
                               "before_first_stage_min": round(setup / 60, 1), "groups": rows,
                               "skipped_unchanged": skipped})
        print(f"{log}: {len(spans)} stages, {wall / 60:.1f} min wall ({setup / 60:.1f} before the first stage)"
              + (f"; skipped as unchanged: {skipped}" if skipped else ""))
        for g in rows:
            print(f"  {g['group']:<20} {g['stages']:>3} stages {g['busy_min']:>6.1f} min busy  "
                  f"from {g['first_start_s'] / 60:6.1f} to {g['last_end_s'] / 60:6.1f} min  "
                  f"load {g['load_1min_mean']}")
    samples = [value for _, value in load]
    result["load_1min"] = {"mean": round(sum(samples) / len(samples), 2), "max": max(samples)} if samples else None
    common.write_result(Path(args.out) if args.out else common.BENCH_DIR / "pipeline_run.json", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
