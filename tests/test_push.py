"""Pushing versions atomically: a server never sees a half-written version, and old ones are pruned."""

import os

import pytest
from tfx.utils import io_utils

from components import pusher
from serving import versions


def saved_model(tmp_path, name="model"):
    model = tmp_path / name
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables" / "variables.index").write_bytes(b"index")
    return str(model)


def test_a_push_lands_whole_and_keeps_the_newest_versions(tmp_path):
    model, base = saved_model(tmp_path), str(tmp_path / "serving" / "m")
    for version in (10, 11, 12):
        target = pusher.push_atomically(model, base, version, keep_versions=2)
        assert sorted(os.listdir(target)) == ["saved_model.pb", "variables"]
    assert sorted(os.listdir(base)) == ["11", "12"]
    with pytest.raises(FileExistsError):
        pusher.push_atomically(model, base, 12, keep_versions=2)
    assert versions.list_versions(base) == [11, 12]


def test_an_interrupted_push_leaves_no_version_a_server_would_load(tmp_path, monkeypatch):
    model, base = saved_model(tmp_path), str(tmp_path / "serving" / "m")
    pusher.push_atomically(model, base, 1, keep_versions=3)
    real_copy = io_utils.copy_dir

    def copy_then_fail(source, destination, **kwargs):
        real_copy(source, destination, **kwargs)  # the copy is written, then the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(io_utils, "copy_dir", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        pusher.push_atomically(model, base, 2, keep_versions=3)
    assert os.listdir(base) == ["1"]
    assert versions.list_versions(base) == [1]


def test_a_staging_directory_is_not_a_version_to_servers(tmp_path):
    base = tmp_path / "m"
    (base / f"{pusher.STAGING_PREFIX}7-123").mkdir(parents=True)
    (base / "3").mkdir()
    assert versions.list_versions(str(base)) == [3]


def test_the_same_saved_model_is_known_by_its_fingerprint(tmp_path):
    first, copy, other, old = (saved_model(tmp_path, name) for name in ("first", "copy", "other", "old"))
    for path, fingerprint in ((first, b"hash-a"), (copy, b"hash-a"), (other, b"hash-b")):
        with open(os.path.join(path, "fingerprint.pb"), "wb") as f:
            f.write(fingerprint)
    assert pusher.same_saved_model(first, copy)
    assert not pusher.same_saved_model(first, other)
    assert not pusher.same_saved_model(first, old)  # no fingerprint: never taken for the same


def test_a_model_is_pushed_only_under_its_own_blessing_or_that_of_the_model_it_refits(tmp_path):
    trained, refit, other = (str(tmp_path / "Trainer" / "model" / n) for n in ("1", "2", "3"))
    record = {"splits": ["train", "eval"], "refit_of": os.path.join(trained, "Format-Serving")}
    assert pusher.blessing_problem(refit, record, trained) == ""
    assert "refits" in pusher.blessing_problem(refit, record, other)
    # A model trained on train alone (no record, or no refit_of) needs its own blessing.
    for own_record in (None, {"splits": ["train"], "refit_of": None}):
        assert pusher.blessing_problem(trained, own_record, trained) == ""
        assert "not for the model" in pusher.blessing_problem(other, own_record, trained)
