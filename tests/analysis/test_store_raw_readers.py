"""The raw recipes of docs/store.md: the store read by DuckDB, polars, pyarrow and pandas alone.

The store is written with btnet-lab, then read with each library's own API and nothing from
btnet-lab, exactly as the documentation shows.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from analysis.store import compact, write_trial


@pytest.fixture()
def mixed_store(tmp_path: Path, make_row: Callable[..., dict]) -> Path:
    """Two studies with different columns, an int/float config column, one study compacted,
    and one trial rewritten after that compaction."""
    for i in range(3):
        write_trial(
            tmp_path, make_row(study="a", trial_id=f"a{i}", cfg_epochs=10, final_acc_7_7=0.7)
        )
    for i in range(2):
        write_trial(tmp_path, make_row(study="b", trial_id=f"b{i}", cfg_epochs=2.5))
    compact(tmp_path, "a")
    write_trial(tmp_path, make_row(study="a", trial_id="a0", cfg_epochs=10, final_acc_7_7=0.9))
    return tmp_path


DEDUP = (
    "select * from read_parquet('{root}/trials/**/*.parquet', union_by_name=true) "
    "qualify row_number() over (partition by study, trial_id order by written_at desc) = 1"
)


def test_duckdb_recipe_reads_every_study(mixed_store: Path) -> None:
    """DuckDB's glob with union_by_name reads all files; the dedup recipe keeps the newest."""
    root = mixed_store
    raw = duckdb.sql(
        f"select * from read_parquet('{root}/trials/**/*.parquet', union_by_name=true)"
    ).df()
    assert len(raw) == 6  # a0 twice until the next compaction (documented)
    newest = duckdb.sql(DEDUP.format(root=root)).df().set_index("trial_id")
    assert len(newest) == 5
    assert newest.loc["a0", "final_acc_7_7"] == 0.9
    assert pd.isna(newest.loc["b0", "final_acc_7_7"])
    assert newest.loc["b0", "cfg_epochs"] == 2.5


def test_polars_recipe_reads_every_study(mixed_store: Path) -> None:
    """polars: scan each file, concatenate diagonally with type relaxation."""
    files = glob.glob(f"{mixed_store}/trials/**/*.parquet", recursive=True)
    df = pl.concat([pl.scan_parquet(f) for f in files], how="diagonal_relaxed").collect()
    newest = df.sort("written_at").unique(subset=["study", "trial_id"], keep="last")
    assert newest.height == 5
    assert newest.filter(pl.col("trial_id") == "a0")["final_acc_7_7"].item() == 0.9
    assert newest.schema["cfg_epochs"] == pl.Float64


def test_pyarrow_recipe_reads_every_study(mixed_store: Path) -> None:
    """pyarrow: unify the files' schemas (permissive), then one dataset over all files."""
    files = glob.glob(f"{mixed_store}/trials/**/*.parquet", recursive=True)
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    table = ds.dataset(files, schema=schema, format="parquet").to_table()
    assert table.num_rows == 6
    assert table.schema.field("cfg_epochs").type == pa.float64()
    one_study = pq.read_table(f"{mixed_store}/trials/b")
    assert one_study.num_rows == 2


def test_pandas_recipe_reads_every_study(mixed_store: Path) -> None:
    """pandas: read each file and concatenate; sort by written_at and keep the last."""
    files = glob.glob(f"{mixed_store}/trials/**/*.parquet", recursive=True)
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    newest = df.sort_values("written_at").drop_duplicates(["study", "trial_id"], keep="last")
    assert len(newest) == 5
    assert pd.read_parquet(f"{mixed_store}/trials/b")["trial_id"].tolist() == ["b0", "b1"]


def test_curves_read_raw(mixed_store: Path, make_row: Callable[..., dict]) -> None:
    """The curves table reads with a plain DuckDB glob too."""
    write_trial(
        mixed_store, make_row(study="c"), [{"iteration": 3, "metric": "loss", "value": 0.5}]
    )
    rows = duckdb.sql(
        f"select study, trial_id, iteration, metric, value "
        f"from read_parquet('{mixed_store}/curves/**/*.parquet', union_by_name=true)"
    ).fetchall()
    assert rows == [("c", "t0", 3, "loss", 0.5)]
