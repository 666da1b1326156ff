"""Tests of analysis/store.py: schema, validation, replacement, reading, compaction, SQL."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from analysis import store
from analysis.store import (
    SCHEMA_VERSION,
    compact,
    config_column,
    config_key,
    finished_trial_ids,
    flatten_config,
    list_studies,
    read_curves,
    read_trials,
    sql,
    write_trial,
    write_trials,
)
from btnet_core.errors import StoreError


def _files(root: Path, table: str = "trials") -> list[Path]:
    return sorted((root / table).rglob("*.parquet"))


# -- column conventions ----------------------------------------------------------------------


def test_config_column_replaces_dots_with_double_underscores() -> None:
    """The agreed mapping of dotted keys to columns, and its reverse."""
    assert config_column("stage2.lr") == "cfg_stage2__lr"
    assert config_column("model.insertion.7") == "cfg_model__insertion__7"
    assert config_key("cfg_model__insertion__7") == "model.insertion.7"


def test_config_column_refuses_keys_that_cannot_be_reversed() -> None:
    """A key holding '__' or a trailing '_' would map back to another key."""
    for bad in ("a__b", "a_.b", "a.b_", "", "a-b"):
        with pytest.raises(StoreError):
            config_column(bad)


def test_flatten_config_makes_scalars_and_json_lists() -> None:
    """Nested keys are dotted, lists become JSON strings, empty mappings are dropped."""
    flat = flatten_config(
        {"stage2": {"lr": 0.02, "res": [7, 14]}, "model": {"insertion": {7: 1}}, "x": {}}
    )
    assert flat == {
        "cfg_model__insertion__7": 1,
        "cfg_stage2__lr": 0.02,
        "cfg_stage2__res": "[7, 14]",
    }


def test_flatten_config_refuses_colliding_keys() -> None:
    """'a.b' at top level and {'a': {'b'}} would share one column."""
    with pytest.raises(StoreError, match="collide"):
        flatten_config({"a.b": 1, "a": {"b": 2}})


# -- writing and validation ------------------------------------------------------------------


def test_written_trial_reads_back_with_its_values(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """Fixed, config, metric and cost columns survive a round trip with their types."""
    write_trial(
        tmp_path,
        make_row(start_time="2025-01-02T03:04:05Z", trunk_cache_hit=True),
        [{"iteration": 1, "metric": "loss", "value": 2.5}],
    )
    df = read_trials(tmp_path, "s1")
    row = df.iloc[0]
    assert row["schema_version"] == SCHEMA_VERSION
    assert row["cfg_stage2__lr"] == 0.02
    assert row["final_acc_112_7"] == 0.86
    assert row["macs_7_branch"] == 1_517_000_000
    assert bool(row["trunk_cache_hit"]) is True
    assert row["start_time"] == pd.Timestamp("2025-01-02 03:04:05", tz="UTC")
    assert pd.notna(row["written_at"])
    assert pd.isna(row["variant"])  # every fixed column exists, null when not given


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"status": "finished"}, "status 'finished' is not one of"),
        ({"kind": "grid"}, "kind 'grid'"),
        ({"foo": 1}, "unknown column 'foo'"),
        ({"final_acc": "high"}, "expected a number"),
        ({"macs_7": 1.5}, "expected an integer"),
        ({"seed": True}, "expected an integer, got a bool"),
        ({"variant": "a"}, "a sweep trial has no variant"),
        ({"trial_id": None}, "required column 'trial_id'"),
        ({"cfg_x": {"a": 1}}, "value of type dict"),
        ({"start_time": "yesterday"}, "not a valid time"),
        ({"schema_version": 99}, "schema_version 99"),
    ],
)
def test_bad_rows_are_refused_with_one_line(
    tmp_path: Path, change: dict, message: str, make_row: Callable[..., dict]
) -> None:
    """A row breaking the conventions raises StoreError naming the column; nothing is written."""
    with pytest.raises(StoreError, match=message) as info:
        write_trial(tmp_path, make_row(**change))
    assert "\n" not in str(info.value)
    assert not _files(tmp_path)


def test_ablation_row_needs_a_variant(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """An ablation trial without its variant cannot be paired with the baseline."""
    with pytest.raises(StoreError, match="needs a variant"):
        write_trial(tmp_path, make_row(kind="ablation"))


def test_nan_metric_is_stored_as_null(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """A diverged trial's NaN loss reads as missing (so SQL averages skip it)."""
    write_trial(tmp_path, make_row(status="diverged", final_loss=math.nan))
    assert pd.isna(read_trials(tmp_path, "s1")["final_loss"].iloc[0])
    assert sql(tmp_path, "select count(final_loss) n from trials")["n"].iloc[0] == 0


def test_rewriting_a_trial_replaces_it(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """--resume writes the same (study, trial_id) again: one row, the newest, remains."""
    write_trial(
        tmp_path, make_row(final_acc_112_7=0.5), [{"iteration": 1, "metric": "loss", "value": 9.0}]
    )
    write_trial(
        tmp_path, make_row(final_acc_112_7=0.9), [{"iteration": 1, "metric": "loss", "value": 1.0}]
    )
    df = read_trials(tmp_path, "s1")
    assert df["final_acc_112_7"].tolist() == [0.9]
    assert read_curves(tmp_path, "s1")["value"].tolist() == [1.0]
    assert len(_files(tmp_path)) == 1  # the older single-trial file was removed


def test_rewrite_after_compaction_still_reads_once(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """A trial rewritten after its study was compacted has two stored copies; one is read."""
    write_trial(tmp_path, make_row(final_acc_112_7=0.5))
    write_trial(tmp_path, make_row(trial_id="t1"))
    compact(tmp_path, "s1")
    write_trial(tmp_path, make_row(final_acc_112_7=0.9))
    df = read_trials(tmp_path, "s1", columns=["trial_id", "final_acc_112_7"])
    assert df.to_dict("list") == {"trial_id": ["t0", "t1"], "final_acc_112_7": [0.9, 0.86]}
    assert sql(tmp_path, "select count(*) n from trials")["n"].iloc[0] == 2


def test_batch_write_keeps_the_last_row_of_a_trial(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """write_trials with a trial listed twice stores the later row."""
    write_trials(tmp_path, [make_row(final_acc_112_7=0.1), make_row(final_acc_112_7=0.2)])
    assert read_trials(tmp_path, "s1")["final_acc_112_7"].tolist() == [0.2]


def test_curves_must_belong_to_the_rows_written(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """A curve naming a trial that is not being written is refused."""
    with pytest.raises(StoreError, match="not among the rows"):
        write_trials(
            tmp_path,
            [make_row()],
            [{"trial_id": "other", "iteration": 1, "metric": "loss", "value": 1.0}],
        )


# -- reading ---------------------------------------------------------------------------------


def test_columns_of_different_studies_are_unified(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """Reading across studies: a column one study lacks is null; int and float give float."""
    write_trial(tmp_path, make_row(study="a", cfg_only_a=3, cfg_mixed=1))
    write_trial(tmp_path, make_row(study="b", final_acc_7_7=0.7, cfg_mixed=0.5))
    write_trial(tmp_path, make_row(study="c", cfg_mixed="auto"))
    df = read_trials(tmp_path).set_index("study")
    assert pd.isna(df.loc["b", "cfg_only_a"]) and df.loc["a", "cfg_only_a"] == 3
    assert pd.isna(df.loc["a", "final_acc_7_7"])
    assert sorted(df["cfg_mixed"].tolist()) == ["0.5", "1", "auto"]  # int+float+str -> text


def test_filters_and_columns_are_applied(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """Filters select rows and columns come back in the order asked."""
    write_trials(
        tmp_path,
        [make_row(trial_id=f"t{i}", final_acc_112_7=i / 10, seed=i) for i in range(6)],
    )
    df = read_trials(
        tmp_path, "s1", columns=["seed", "trial_id"], filters=[("final_acc_112_7", ">", 0.25)]
    )
    assert list(df.columns) == ["seed", "trial_id"]
    assert df["trial_id"].tolist() == ["t3", "t4", "t5"]


def test_filter_sees_only_the_newest_write(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """An old version matching a filter must not come back when the new one does not match."""
    write_trial(tmp_path, make_row(final_acc_112_7=0.9))
    compact(tmp_path, "s1")
    write_trial(tmp_path, make_row(final_acc_112_7=0.1))
    assert read_trials(tmp_path, "s1", filters=[("final_acc_112_7", ">", 0.5)]).empty


def test_unknown_filter_column_is_a_store_error(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """A filter naming a column that does not exist says which."""
    write_trial(tmp_path, make_row())
    with pytest.raises(StoreError, match="unknown column 'nope'"):
        read_trials(tmp_path, "s1", filters=[("nope", "==", 1)])
    with pytest.raises(StoreError, match="unknown column"):
        read_trials(tmp_path, "s1", columns=["nope"])


def test_unknown_study_lists_the_known_ones(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """Asking for a study that is not there names the ones that are."""
    write_trial(tmp_path, make_row(study="alpha"))
    with pytest.raises(StoreError, match="unknown study 'beta'.*alpha"):
        read_trials(tmp_path, "beta")


def test_missing_and_empty_stores_are_clear_errors(tmp_path: Path) -> None:
    """No folder, or a folder without trials, is one clear line."""
    with pytest.raises(StoreError, match="no result store"):
        read_trials(tmp_path / "nowhere")
    with pytest.raises(StoreError, match="holds no trials"):
        list_studies(tmp_path)


def test_newer_schema_in_manifest_is_refused(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """A store written by a newer btnet-lab is refused for reading and writing."""
    write_trial(tmp_path, make_row())
    (tmp_path / "_store.json").write_text(json.dumps({"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(StoreError, match="newer|up to"):
        read_trials(tmp_path)
    with pytest.raises(StoreError, match="upgrade btnet-lab"):
        write_trial(tmp_path, make_row(trial_id="t1"))


def test_newer_schema_in_a_file_is_refused(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """A data file stamped with a newer schema version is refused even without a manifest."""
    write_trial(tmp_path, make_row())
    (tmp_path / "_store.json").unlink()
    path = _files(tmp_path)[0]
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"btnet_lab.schema_version"] = str(SCHEMA_VERSION + 1).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    store._schema_cache.clear()
    with pytest.raises(StoreError, match="schema version"):
        read_trials(tmp_path)


def test_finished_trial_ids_of_a_fresh_study_is_empty(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """--resume of a study that never ran (or of a store that does not exist) skips nothing."""
    assert finished_trial_ids(tmp_path / "nowhere", "s1") == set()
    write_trial(tmp_path, make_row(study="other"))
    assert finished_trial_ids(tmp_path, "s1") == set()


def test_finished_trial_ids_filters_by_status(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """All written trials are finished; a status filter narrows them."""
    write_trial(tmp_path, make_row(trial_id="ok"))
    write_trial(tmp_path, make_row(trial_id="bad", status="error", error="boom"))
    assert finished_trial_ids(tmp_path, "s1") == {"ok", "bad"}
    assert finished_trial_ids(tmp_path, "s1", statuses=["completed"]) == {"ok"}


def test_list_studies_counts_status_and_cost(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """One row per study with counts by status and summed hours."""
    write_trials(
        tmp_path,
        [
            make_row(trial_id="a", gpu_hours=1.0),
            make_row(trial_id="b", status="error", gpu_hours=0.5),
            make_row(trial_id="c", status="diverged", gpu_hours=0.25),
        ],
    )
    row = list_studies(tmp_path).iloc[0]
    assert (row["trials"], row["completed"], row["errors"], row["diverged"]) == (3, 1, 1, 1)
    assert row["gpu_hours"] == pytest.approx(1.75)
    assert pd.isna(row["cpu_hours"])  # unknown, not zero


def test_curves_filter_by_trial_and_metric(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """read_curves selects trials and metrics and sorts by iteration."""
    points = [
        {"iteration": i, "metric": m, "value": float(i)}
        for i in (2, 1)
        for m in ("loss", "acc_112_7")
    ]
    write_trial(tmp_path, make_row(), points)
    write_trial(tmp_path, make_row(trial_id="t1"), points)
    df = read_curves(tmp_path, "s1", trial_ids=["t1"], metrics=["loss"])
    assert df[["trial_id", "iteration"]].values.tolist() == [["t1", 1], ["t1", 2]]


def test_uri_roots_work_like_paths(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """A file:// URI names the same store as the path."""
    write_trial(tmp_path.as_uri(), make_row())
    assert read_trials(str(tmp_path))["trial_id"].tolist() == ["t0"]


# -- compaction ------------------------------------------------------------------------------


def test_compaction_merges_files_and_keeps_every_trial(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """After compaction a study is one file per table, with the same rows and curves."""
    for i in range(5):
        write_trial(
            tmp_path,
            make_row(trial_id=f"t{i}"),
            [{"iteration": 1, "metric": "loss", "value": float(i)}],
        )
    before = read_trials(tmp_path, "s1").drop(columns="written_at")
    compact(tmp_path)
    assert len(_files(tmp_path)) == 1 and len(_files(tmp_path, "curves")) == 1
    after = read_trials(tmp_path, "s1").drop(columns="written_at")
    pd.testing.assert_frame_equal(before, after)
    assert len(read_curves(tmp_path, "s1")) == 5


def test_automatic_compaction_bounds_the_number_of_files(
    tmp_path: Path, make_row: Callable[..., dict]
) -> None:
    """With compact_at=4 a study never holds more than 3 single-trial files."""
    for i in range(10):
        write_trial(tmp_path, make_row(trial_id=f"t{i}"), compact_at=4)
    small = [p for p in _files(tmp_path) if p.name.startswith("t-")]
    assert len(small) < 4
    assert len(read_trials(tmp_path, "s1")) == 10


def test_crash_between_merged_write_and_delete_is_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_row: Callable[..., dict]
) -> None:
    """If compaction dies after writing the merged file, readers still see each trial once."""
    for i in range(3):
        write_trial(tmp_path, make_row(trial_id=f"t{i}"))

    def crash(self: object, path: str) -> bool:
        raise KeyboardInterrupt("simulated crash")

    monkeypatch.setattr(store.Storage, "delete", crash)
    with pytest.raises(KeyboardInterrupt):
        compact(tmp_path, "s1")
    monkeypatch.undo()
    assert len(_files(tmp_path)) == 4  # merged file plus the three inputs
    assert read_trials(tmp_path, "s1")["trial_id"].tolist() == ["t0", "t1", "t2"]
    assert sql(tmp_path, "select count(*) n from trials")["n"].iloc[0] == 3
    compact(tmp_path, "s1")
    assert len(_files(tmp_path)) == 1


def test_compaction_drops_old_orphaned_curves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_row: Callable[..., dict]
) -> None:
    """Curves whose trial row never landed are kept while recent and dropped once stale."""
    write_trial(tmp_path, make_row(), [{"iteration": 1, "metric": "loss", "value": 1.0}])
    monkeypatch.setattr(
        store.Storage, "write_parquet", _fail_on_trials(store.Storage.write_parquet)
    )
    with pytest.raises(StoreError):
        write_trial(
            tmp_path, make_row(trial_id="lost"), [{"iteration": 1, "metric": "loss", "value": 2.0}]
        )
    monkeypatch.undo()
    assert read_curves(tmp_path, "s1")["trial_id"].tolist() == ["t0"]  # orphan never read
    compact(tmp_path, "s1")
    assert len(pq.read_table(_files(tmp_path, "curves")[0])) == 2  # recent: kept
    monkeypatch.setattr(store, "STALE_AFTER_S", -1.0)
    compact(tmp_path, "s1")
    assert len(pq.read_table(_files(tmp_path, "curves")[0])) == 1


def _fail_on_trials(original):  # type: ignore[no-untyped-def]
    def write(self, path, table):  # type: ignore[no-untyped-def]
        if "/trials/" in path:
            raise StoreError("simulated failure writing the trial row")
        return original(self, path, table)

    return write


# -- SQL -------------------------------------------------------------------------------------


def test_sql_filter_and_group(ablation_store: tuple[Path, str]) -> None:
    """The trials view answers a filter-and-group query over the store."""
    root, study = ablation_store
    df = sql(
        root,
        f"select variant, count(*) n, avg(final_acc_112_7) acc from trials "
        f"where study = '{study}' and status = 'completed' group by variant order by acc desc",
    )
    assert df["variant"].iloc[0] == "deeper_insertion" and df["variant"].iloc[-1] == "no_bct"
    assert df["n"].tolist() == [8] * 5


def test_sql_curves_view_joins_trials(ablation_store: tuple[Path, str]) -> None:
    """The curves view holds the learning curves of the trials view."""
    root, _ = ablation_store
    df = sql(
        root,
        "select count(distinct c.trial_id) n from curves c join trials t using (study, trial_id)",
    )
    assert df["n"].iloc[0] == 40


def test_sql_error_is_one_line(ablation_store: tuple[Path, str]) -> None:
    """A SQL mistake raises StoreError with DuckDB's first line."""
    root, _ = ablation_store
    with pytest.raises(StoreError, match="SQL error") as info:
        sql(root, "select nope from trials")
    assert "\n" not in str(info.value)


def test_damaged_file_is_a_store_error(tmp_path: Path, make_row: Callable[..., dict]) -> None:
    """A truncated Parquet file (a partial copy) gives a StoreError naming it."""
    write_trial(tmp_path, make_row())
    path = _files(tmp_path)[0]
    path.write_bytes(path.read_bytes()[:100])
    store._schema_cache.clear()
    with pytest.raises(StoreError, match="not a readable Parquet file"):
        read_trials(tmp_path)
