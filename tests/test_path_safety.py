"""No params value can become a path outside the project (issue 28): names that become folder names and DVC
stage names are checked at params validation, with their allowed form and a fix; and the writers refuse
an output whose folder resolves outside the project ('..' applied, symlinks followed)."""
from __future__ import annotations

import json
import os

import pytest
import yaml
from conftest import PROJECT

from emotune.atomic import atomic_dir, write_json
from emotune.config import parse_params
from emotune.errors import EmotuneError
from emotune.paths import check_model_reference, check_path_segment, run_paths

TOY = {"task": "single_label", "labels": ["joy", "anger"], "official_metric": "accuracy", "label_column": "label",
       "files": {"train": "data/user/train.csv", "test": "data/user/test.csv"}}
# What a name must be, as the error says it (emotune/paths.py SEGMENT_FORM)
FORM = "letters, digits, '_', '.' and '-', starting with a letter or digit"


def shipped_with(**changes) -> dict:
    raw = yaml.safe_load((PROJECT / "params.yaml").read_text(encoding="utf-8"))
    raw.update(changes)
    return raw


@pytest.mark.parametrize("name, fix", [("../../../escaped", "escaped"), ("my reviews", "my_reviews"),
                                       ("my/reviews", "my_reviews"), ("/tmp/abs", "tmp_abs"), ("..", "my_name"),
                                       (".hidden", "hidden"), ("a" * 101, "a" * 100), ("", "my_name")])
def test_a_dataset_name_that_is_not_one_folder_name_is_refused_with_a_fix(name, fix):
    raw = shipped_with()
    raw["dataset_registry"][name] = TOY
    with pytest.raises(EmotuneError) as error:
        parse_params(raw)
    message = str(error.value)
    assert f"dataset_registry.{name}: {name!r} cannot be a dataset name" in message, message
    assert FORM in message and f"e.g. {fix!r}" in message, message


@pytest.mark.parametrize("name", ["my_reviews", "reviews-2024", "v1.2", "SemEval2018"])
def test_ordinary_dataset_names_pass(name):
    raw = shipped_with(datasets=[name])
    raw["dataset_registry"][name] = TOY
    assert parse_params(raw).datasets == [name]


@pytest.mark.parametrize("model", ["/abs/model", "../outside", "models/../../x", "~/m", "my model",
                                   "owner//name", "owner/name@bad rev", "owner/name@", "./models/m"])
def test_a_model_that_would_name_folders_outside_is_refused(model):
    for raw in (shipped_with(models=[model]), shipped_with(large={"datasets": [], "models": [model]})):
        with pytest.raises(EmotuneError, match=r"models\[0\]: .* cannot name a model: give a registry name"):
            parse_params(raw)
    raw = shipped_with()
    raw["baseline"]["zero_shot"]["models"] = [model]
    with pytest.raises(EmotuneError, match=r"baseline\.zero_shot\.models\[0\]: .* cannot name a model"):
        parse_params(raw)
    raw = shipped_with(model_registry={model: {"hub_id": "owner/name"}})
    with pytest.raises(EmotuneError, match=r"model_registry\..*cannot name a model"):
        parse_params(raw)


@pytest.mark.parametrize("model", ["minilm", "owner/name", "owner/name@v1.0", "owner/name@4f2a9c1",
                                   "models/base/my-model"])
def test_model_references_stay_what_they_were(model):
    assert check_model_reference(model, "models[0]") == model


def test_names_that_would_collide_with_the_outputs_own_folders_are_refused():
    raw = shipped_with()
    raw["dataset_registry"]["checkpoints"] = TOY
    with pytest.raises(EmotuneError, match="models/checkpoints/"):
        parse_params(raw)
    with pytest.raises(EmotuneError, match=r"models\[0\]: 'baseline' is the folder of the baselines"):
        parse_params(shipped_with(models=["baseline"]))


def test_the_segment_check_is_reusable_for_run_ids():
    assert check_path_segment("seed42", "run id", "seeds[0]") == "seed42"
    with pytest.raises(EmotuneError, match=r"seeds\[0\]: '4 2' cannot be a run id.*e\.g\. '4_2'"):
        check_path_segment("4 2", "run id", "seeds[0]")


def test_the_fetch_stage_never_writes_above_the_project(project, run_stage):
    """It wrote Parquet files three folders above the repository."""
    params = shipped_with()
    params["dataset_registry"]["../../../escaped"] = TOY
    root = project(params)
    result = run_stage(root, "fetch", "../../../escaped")
    assert result.returncode == 2 and "cannot be a dataset name" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "data/raw/../../../escaped").resolve().exists()


@pytest.fixture
def inside(tmp_path, monkeypatch):
    """A project folder (params.yaml) as the working directory, and a folder outside it."""
    root, outside = tmp_path / "project", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    (root / "params.yaml").write_text("{}")
    monkeypatch.chdir(root)
    return root, outside


def test_writers_refuse_a_symlinked_output_folder_pointing_outside(inside):
    root, outside = inside
    (root / "metrics").symlink_to(outside, target_is_directory=True)
    with pytest.raises(EmotuneError, match=r"refusing to write .*metrics/clean/x\.json: its folder resolves to "
                                           r".*elsewhere/clean, outside the project"):
        write_json(root / "metrics/clean/x.json", {"a": 1})
    with pytest.raises(EmotuneError, match="outside the project"):
        with atomic_dir(root / "metrics/raw/x"):
            pass
    assert not list(outside.rglob("*")), "nothing was written through the link"
    with pytest.raises(EmotuneError, match="outside the project.*`dvc cache dir <folder>`"):
        run_paths("toy", "tiny-bert", "lora", root)


def test_writers_refuse_dot_dot_and_absolute_names_inside_the_project(inside):
    root, outside = inside
    with pytest.raises(EmotuneError, match="outside the project"):
        with atomic_dir(root / "data/raw/../../../elsewhere/x"):
            pass
    with pytest.raises(EmotuneError, match="outside the project"):
        run_paths("toy", str(outside), "lora", root)  # root / an absolute path is that absolute path
    assert not list(outside.rglob("*"))


def test_writers_still_write_inside_and_where_a_caller_chooses(inside):
    root, outside = inside
    write_json(root / "metrics/clean/x.json", {"a": 1})
    with atomic_dir(root / "data/raw/x") as out:
        (out / "f").write_text("f")
    assert json.loads((root / "metrics/clean/x.json").read_text()) == {"a": 1} and (root / "data/raw/x/f").exists()
    # an output that is itself a link (DVC links outputs to its cache) is replaced, not written through
    (outside / "cache").mkdir()
    (root / "data/raw/linked").symlink_to(outside / "cache", target_is_directory=True)
    with atomic_dir(root / "data/raw/linked") as out:
        (out / "f").write_text("new")
    assert not os.path.islink(root / "data/raw/linked") and not list((outside / "cache").iterdir())
    write_json(outside / "export.json", {"b": 2})  # outside any project: the caller's choice (export --out)
    assert (outside / "export.json").exists()
