"""Scaling up (docs/scaling.md): the commands of that section, run for real on the CPU.

- Data parallel: the train stage as 2 processes (gloo) matches a 1-process run of the same global batch,
  only rank 0 writes outputs, and a killed 2-process run resumes to the uninterrupted run's exact result.
  Launched every way docs/scaling.md shows: `train.processes: 2` (the stage starts torchrun itself; also
  through `dvc exp run -S train.processes=2`), `accelerate launch --config_file
  scripts/accelerate-multinode.yaml`, `accelerate launch --multi_gpu`, `torchrun` (+ `dvc commit`).
- Queued sweeps: `dvc exp run --queue` + scripts/queue-gpus (one `dvc queue` worker per GPU set): both
  experiments run, each worker has its own CUDA_VISIBLE_DEVICES, both land in `dvc exp show`.
- A shared DVC remote: `dvc push` from one clone, `dvc pull` into a fresh one, where `dvc repro` then runs
  nothing.

Tiny models, a synthetic dataset. About 4.5 minutes on 2 busy cores: the data-parallel part ~1.5, the
DVC project ~3 (its fixture reproduces the whole pipeline once). Linux: reads /proc.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from toy_project import DVC, VENV_BIN, dvc_env, ran, sh, write_toy_project
from toy_runs import prepare_run, toy_params

from emotune import testing
from emotune import train as tr
from emotune.config import parse_params
from emotune.errors import EmotuneError
from emotune.plan import read_plan

ROOT = Path(__file__).resolve().parent.parent  # the checkout

pytestmark = pytest.mark.scale_out  # pytest.ini; `-m "not scale_out"` leaves these ~4 minutes out
QUIET = lambda message: None  # noqa: E731


# ---------------------------------------------------------------------------------------------
# Data parallel: the same train stage as 2 processes
# ---------------------------------------------------------------------------------------------
# 160 rows in global batches of 16: each process takes 8 rows of every batch (Trainer, through accelerate,
# hands process r the r-th slice of the length-grouped global batch; emotune/train.py cuts the length
# groups from the global batch so both runs see the same batches). Dropout is off (tiny model config,
# adapter.dropout 0): with it, two processes draw other masks than one, and the runs could not be compared.
SETTINGS = dict(epochs=2, batch_size=16, checkpoint_every=3)
SIZES, LR = (160, 60, 20), 3e-2
# Two processes compute the same global batch as one, in float32 with other rounding: each pads its rows
# only to its own longest one and takes its own mean, then the all-reduce averages the two means. A
# wrong split (other batches, a duplicated or dropped row) moves losses by 1e-2 and weights by 0.1. The
# tolerances sit well between, with room for other CPUs' rounding.
TOLERANCE = 1e-5  # losses
WEIGHT_TOLERANCE = 1e-3  # trained weights (they are of order 0.1)
TIMING = ("wall_time_s", "train_time_s", "train_examples_per_s", "tokens_per_s", "peak_memory_mb")

# Installed as sitecustomize in the processes of a launcher (RANK is set there only): logs every file
# written, renamed, removed or made under $WRITES_UNDER to $WRITES_LOG/rank-<RANK>.txt.
WRITES_HOOK = """
import os, sys
if os.environ.get("RANK") is not None and os.environ.get("WRITES_LOG"):
    _under = os.environ["WRITES_UNDER"]
    _log = open(os.path.join(os.environ["WRITES_LOG"], "rank-%s.txt" % os.environ["RANK"]), "a", buffering=1)
    _write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def _hook(event, args):
        if event == "open":
            mode, flags = args[1], args[2] or 0
            if not ((isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & _write):
                return
        elif event not in ("os.rename", "os.replace", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
            return
        for path in args[:2] if event in ("os.rename", "os.replace") else args[:1]:
            if isinstance(path, (str, bytes, os.PathLike)) and os.fsdecode(path).startswith(_under):
                _log.write("%s %s\\n" % (event, os.fsdecode(path)))

    sys.addaudithook(_hook)
"""


def stage_env(**extra) -> dict:
    """A stage subprocess's environment: the checkout's stages/ importable from a project with no code
    (after any PYTHONPATH of `extra`), offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "HF_ENDPOINT")}
    python_path = os.pathsep.join([*filter(None, [extra.pop("PYTHONPATH", None)]), str(ROOT)])
    env.update(HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1", OMP_WAIT_POLICY="PASSIVE", OMP_NUM_THREADS="1",
               PYTHONPATH=python_path, **extra)
    return env


def ddp_project(root: Path, model: Path, processes: int):
    """A project (no code: stage_env puts the checkout's stages/ on PYTHONPATH) with a run (plan + tokenized
    toy data) of `model` with train.processes = `processes`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump({"seed": 7, "datasets": [], "fetch": {}, "clean": {},
                                                      "audit": {}, "dataset_registry": {}}))
    return prepare_run(root, model, "lora", params=toy_params(processes=processes, **SETTINGS), lr=LR, sizes=SIZES)


def history(paths) -> list[dict]:
    return json.loads((paths.model / "run.json").read_text())["history"]


def weights(paths) -> dict:
    from safetensors.torch import load_file

    return load_file(paths.model / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """A 2-process run launched as `dvc repro` does (`python -m stages.train ...` with train.processes: 2:
    the stage starts torchrun itself), with every write of each process logged; and the same run in one
    process."""
    base = tmp_path_factory.mktemp("ddp")
    model = testing.save_tiny_model("bert", base / "tiny-bert")
    config = json.loads((model / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))

    project = base / "project"
    plan, paths = ddp_project(project, model, processes=2)
    (base / "hook").mkdir()
    (base / "hook" / "sitecustomize.py").write_text(WRITES_HOOK)
    (base / "writes").mkdir()
    env = stage_env(PYTHONPATH=str(base / "hook"), WRITES_LOG=str(base / "writes"), WRITES_UNDER=str(project))
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "stages.train", "toy", "tiny-bert", "lora"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(f"2-process run: {time.perf_counter() - started:.1f} s")

    _, single = ddp_project(base / "single", model, processes=1)
    result = tr.train(read_plan(single.plan), single, log=QUIET)
    return {"plan": plan, "paths": paths, "stdout": run.stdout, "writes": base / "writes", "model": model,
            "single": single, "single_result": result, "base": base}


def test_two_processes_match_one_process_on_the_same_global_batches(two_processes):
    paths, single = two_processes["paths"], two_processes["single"]
    two, one = history(paths), history(single)
    assert [e["epoch"] for e in two] == [e["epoch"] for e in one] == [1, 2]
    for a, b in zip(two, one):
        for key in ("train_loss", "val_loss"):
            assert abs(a[key] - b[key]) < TOLERANCE, (key, a, b)
        assert {k: v for k, v in a.items() if k.startswith("val_") and k != "val_loss"} == \
            {k: v for k, v in b.items() if k.startswith("val_") and k != "val_loss"}
    assert two[0]["train_loss"] != two[1]["train_loss"], "it trained"
    w2, w1 = weights(paths), weights(single)
    assert set(w2) == set(w1)
    for name in w1:
        assert (w2[name] - w1[name]).abs().max() < WEIGHT_TOLERANCE, name
    summary2, summary1 = json.loads(paths.metrics.read_text()), json.loads(single.metrics.read_text())
    assert summary2["train_examples"] == summary1["train_examples"] == SIZES[0]
    assert summary2["best_epoch"] == summary1["best_epoch"]
    card = json.loads((paths.model / "run.json").read_text())
    assert card["plan"]["train"]["processes"] == 2
    # one log, from rank 0
    assert two_processes["stdout"].count("epoch 1/2:") == 1, two_processes["stdout"]


def test_only_rank_0_writes_outputs(two_processes):
    writes = two_processes["writes"]
    rank0 = (writes / "rank-0.txt").read_text()
    rank1 = (writes / "rank-1.txt").read_text()  # the file exists: the second process ran
    paths = two_processes["paths"]
    # Rank 1 only makes the checkpoint folders it saves its own RNG state into (Trainer's
    # rng_state_<rank>.pth, through torch.save, which the hook does not see; the kill test below finds
    # the file), so that a resumed run continues its dropout masks. Everything else comes from rank 0.
    for line in rank1.splitlines():
        event, path = line.split(" ", 1)
        assert event == "os.mkdir" and path.startswith(f"{paths.checkpoints}/checkpoint-"), line
    for path in (paths.model, paths.metrics, paths.live / "metrics.json", paths.checkpoints / "checkpoint-3"):
        assert str(path) in rank0, (path, rank0)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the launcher's processes in /proc")
def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(two_processes, tmp_path):
    """Killed (every process, SIGKILL) after its first checkpoint, restarted: the same metrics, curves and
    weights as the uninterrupted 2-process run. Started with `accelerate launch` (docs/scaling.md's several-
    machines command, on one machine) and resumed with `torchrun` (its several-GPUs command)."""
    reference = two_processes["paths"]
    project = tmp_path / "project"
    plan, paths = ddp_project(project, two_processes["model"], processes=2)
    assert plan == two_processes["plan"]

    # docs/scaling.md's several-machines command, on this one machine: 1 machine, 2 processes, a free port.
    killed = subprocess.Popen([str(VENV_BIN / "accelerate"), "launch", "--config_file",
                               str(ROOT / "scripts" / "accelerate-multinode.yaml"), "--machine_rank", "0",
                               "--num_machines", "1", "--num_processes", "2", "--main_process_port", "0",
                               "-m", "stages.train", "toy", "tiny-bert", "lora"], cwd=project, env=stage_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while tr.last_checkpoint(paths.checkpoints) is None and killed.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    for pid in process_tree(killed.pid):  # the launcher and its processes (torchrun gives them own sessions)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL, killed.stdout.read().decode()[-3000:]
    assert tr.last_checkpoint(paths.checkpoints) is not None and not paths.metrics.exists()
    assert {"rng_state_0.pth", "rng_state_1.pth"} <= {p.name for p in tr.last_checkpoint(paths.checkpoints).iterdir()}

    resumed = subprocess.run([str(VENV_BIN / "torchrun"), "--standalone", "--nproc-per-node", "2",
                              "-m", "stages.train", "toy", "tiny-bert", "lora"], cwd=project, env=stage_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from checkpoint" in resumed.stdout, resumed.stdout
    card = json.loads((paths.model / "run.json").read_text())
    assert len(card["resumed_from"]) == 1
    drop = lambda summary: {k: v for k, v in summary.items() if k not in TIMING}  # noqa: E731
    assert drop(json.loads(paths.metrics.read_text())) == drop(json.loads(reference.metrics.read_text()))
    curve = "plots/metrics/train/loss.tsv"
    assert (paths.live / curve).read_text() == (reference.live / curve).read_text()
    assert (paths.model / "adapter_model.safetensors").read_bytes() == \
        (reference.model / "adapter_model.safetensors").read_bytes()


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, from /proc."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo.extend(children.get(tree[-1], []))
    return tree


# ---------------------------------------------------------------------------------------------
# The switch: validated, and one code path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("change, message", [
    (dict(processes=0), r"train\.processes: must be >= 1"),
    (dict(processes=8, batch_size=4), r"train\.batch_size: 4 rows cannot be shared by train\.processes = 8"),
    (dict(processes=2, batch_size=15), r"train\.batch_size: 15 rows .* make batch_size a multiple of 2"),
])
def test_processes_is_validated(change, message):
    with pytest.raises(EmotuneError, match=message):
        toy_params(**change)


def test_group_processes_is_validated(shipped_params):
    shipped_params["large"]["datasets"] = ["tweet_eval_emotion"]  # the opt-in group, switched on
    shipped_params["large"]["train"]["processes"] = 0
    with pytest.raises(EmotuneError, match=r"large\.train\.processes: must be >= 1"):
        parse_params(shipped_params)


def toy_plan(processes: int):
    """A run plan of the toy dataset with train.processes = `processes` (no files)."""
    from toy_runs import local_entry

    from emotune import plan as plan_stage

    params = toy_params(processes=processes)
    return plan_stage.run_plan(params, params.matrices()[0], "toy", local_entry(Path("tiny-bert")), "lora")


def test_the_stage_starts_torchrun_itself_and_checks_a_launcher(monkeypatch):
    plan = toy_plan(processes=2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    started = []
    monkeypatch.setattr(os, "execv", lambda path, argv: started.append(argv) or sys.exit(0))
    with pytest.raises(SystemExit):
        tr.launch(plan, "stages.train", ["toy", "tiny-bert", "lora"])
    assert started == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                        "-m", "stages.train", "toy", "tiny-bert", "lora"]]
    monkeypatch.setenv("WORLD_SIZE", "2")
    tr.launch(plan, "stages.train", [])  # under a launcher with as many processes: nothing to do
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(EmotuneError, match=r"started 4 processes but train\.processes is 2: set train\.processes to 4"):
        tr.launch(plan, "stages.train", [])
    with pytest.raises(EmotuneError, match=r"large\.train\.processes is 2"):
        tr.launch(dataclasses.replace(plan, matrix="large"), "stages.train", [])
    monkeypatch.delenv("WORLD_SIZE")
    tr.launch(toy_plan(processes=1), "stages.train", [])  # one process: runs as it is
    assert len(started) == 1


# ---------------------------------------------------------------------------------------------
# Queued sweeps and a shared remote, in a throw-away git + DVC copy of the project
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def team_project(tmp_path_factory) -> Path:
    """The project with a tiny CSV dataset `toy` and a tiny BERT, one LoRA run (the pattern of
    tests/test_pipeline_dvc.py; groups large/generative empty), reproduced with docs/scaling.md's several-GPUs
    command `dvc exp run -S train.processes=2` and committed."""
    root = tmp_path_factory.mktemp("team") / "project"
    root.mkdir()
    write_toy_project(root, adapters=("lora",), epochs=1)
    out = sh(root, DVC, "exp", "run", "-S", "train.processes=2")
    assert "Running stage 'train@toy-tiny-bert-lora'" in out, out
    # The stage checks that its launcher started train.processes processes, so this ran as 2.
    assert json.loads((root / "data/plans/toy/tiny-bert/lora.json").read_text())["train"]["processes"] == 2
    sh(root, "git", "add", "-A")
    sh(root, "git", "commit", "-qm", "reproduced")
    return root


def test_push_then_pull_into_a_fresh_clone_reproduces_nothing(team_project, tmp_path):
    origin = team_project
    remote = tmp_path / "dvc-remote"
    # docs/scaling.md: set a default remote once, commit it, push the cache
    sh(origin, DVC, "remote", "add", "-d", "team", str(remote))
    sh(origin, "git", "add", ".dvc/config")
    sh(origin, "git", "commit", "-qm", "shared remote")
    sh(origin, DVC, "push")
    assert any(remote.rglob("*")), "dvc push wrote nothing to the remote"

    # A teammate: clone, pull, and nothing needs to run
    clone = tmp_path / "clone"
    sh(tmp_path, "git", "clone", "-q", str(origin), str(clone))
    weights = "models/toy/tiny-bert/lora/adapter_model.safetensors"
    assert not (clone / weights).exists() and not (clone / "data/tokenized/toy/tiny-bert").exists()
    sh(clone, DVC, "pull")
    assert (clone / weights).read_bytes() == (origin / weights).read_bytes()
    out = sh(clone, DVC, "repro")
    assert ran(out) == set(), out
    status = sh(clone, DVC, "status")
    assert "up to date" in status, status


def worker_devices(root: Path) -> dict[str, str | None]:
    """{worker name: CUDA_VISIBLE_DEVICES of its process}, read from /proc (Linux) for every running
    `dvc queue` worker (DVC keeps their pid files in .dvc/tmp/exps/celery/)."""
    devices = {}
    for pidfile in (root / ".dvc" / "tmp").rglob("dvc-exp-worker-*.pid"):
        environ = Path(f"/proc/{pidfile.read_text().strip()}/environ")
        if environ.exists():
            env = dict(item.split("=", 1) for item in environ.read_text().split("\0") if "=" in item)
            devices[pidfile.stem] = env.get("CUDA_VISIBLE_DEVICES")
    return devices


def wait_for_queue(root: Path, timeout: float) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = sh(root, DVC, "queue", "status")
        if not any(word in status for word in ("Queued", "Running")):
            return status
        time.sleep(3)
    raise AssertionError(f"the queue did not finish within {timeout} s:\n{status}")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads worker environments from /proc")
def test_a_queued_sweep_runs_on_workers_pinned_to_their_own_gpus(team_project):
    root = team_project
    # docs/scaling.md: queue a grid, then one worker per pair of GPUs (the runs have train.processes: 2). On this
    # CPU machine the GPU numbers are only environment values, which is what is checked: each worker got
    # its own. The two 2-process runs side by side also show that their launchers do not collide.
    out = sh(root, DVC, "exp", "run", "--queue", "-S", "adapter.r=2,8", "-S", "train.lr=1e-2")
    assert out.count("Queued experiment") == 2, out
    script = subprocess.Popen([str(ROOT / "scripts" / "queue-gpus"), "0,1", "2,3"], cwd=root, env=dvc_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    devices, deadline = {}, time.time() + 300
    while (script.poll() is None or len(devices) < 2) and time.time() < deadline:
        devices.update(worker_devices(root))  # while they work (a worker stops once the queue is empty)
        time.sleep(0.2)
    assert script.wait() == 0, script.stdout.read()
    assert devices == {"dvc-exp-worker-1": "0,1", "dvc-exp-worker-2": "2,3"}
    status = wait_for_queue(root, timeout=900)
    assert status.count("Success") == 2, status

    shown = json.loads(sh(root, DVC, "exp", "show", "--json"))
    exps = [e for row in shown for e in (row.get("experiments") or [])]
    summaries, names = {}, {}
    for exp in exps:
        data = exp["revs"][0]["data"]
        r = data["params"]["params.yaml"]["data"]["adapter"]["r"]
        assert "toy" in data["metrics"]["metrics/summary.json"]["data"], data["metrics"]  # the one DVC metric
        # the train report is a plain (git-tracked) output now: read it from the experiment's commit
        summaries[r] = json.loads(sh(root, "git", "show", f"{exp['revs'][0]['rev']}:metrics/train/toy/tiny-bert/lora.json"))
        names[r] = exp["revs"][0]["name"]
    assert set(summaries) == {2, 8}, shown
    assert summaries[2]["params"]["trainable"] < summaries[8]["params"]["trainable"]
    assert summaries[2]["val"] != summaries[8]["val"], "two different runs, two different results"

    assert "epoch 1/1" in sh(root, DVC, "queue", "logs", names[8])
    sh(root, DVC, "exp", "apply", names[8])
    assert yaml.safe_load((root / "params.yaml").read_text())["adapter"]["r"] == 8
    assert json.loads((root / "metrics/train/toy/tiny-bert/lora.json").read_text()) == summaries[8]


def test_a_run_launched_by_hand_is_recorded_with_dvc_commit(team_project):
    """docs/scaling.md: a run under your own launcher (here `accelerate launch --multi_gpu`: with no GPU its
    processes use gloo) is recorded with `dvc commit`, after which `dvc repro` does not train it again:
    it only evaluates the new model and rebuilds the leaderboard, then has nothing left to do."""
    root = team_project
    summary = root / "metrics/train/toy/tiny-bert/lora.json"
    before = json.loads(summary.read_text())["params"]["trainable"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["adapter"]["r"] = 6
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(root, DVC, "repro", "plan")
    sh(root, str(VENV_BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2",
       "-m", "stages.train", "toy", "tiny-bert", "lora")
    assert json.loads(summary.read_text())["params"]["trainable"] != before  # r = 6, trained by hand
    sh(root, DVC, "commit", "-f", "train@toy-tiny-bert-lora")
    out = sh(root, DVC, "repro")
    assert ran(out) == {"evaluate@toy-tiny-bert-lora", "aggregate"}, out  # downstream of the new model only
    assert ran(sh(root, DVC, "repro")) == set()
