"""Cached reads of the store for the dashboard pages.

Every function goes through workbench.dashboard.views (Store + compare.py), so the numbers are the CLI's. Each cached
call takes the index's file stamp as an argument: a new or finished run changes it and the cache misses;
otherwise a page rerun reads nothing from disk.
"""

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from workbench.compare.runs import compare_runs, comparison_cells, row_direction, sample_diffs, sample_tasks
from workbench.dashboard import views
from workbench.gate.verdicts import significance_verdicts
from workbench.review import items as review_items
from workbench.store import Store
from workbench.store.lineage import lineage as store_lineage
from workbench.system.home import store_dir


def store() -> Store:
    return Store(store_dir(os.environ.get("WB_STORE")))


def stamp() -> tuple:
    """(mtime, size) of index.db and its WAL: changes whenever a run is written."""
    root = store().root
    out = []
    for name in ("index.db", "index.db-wal"):
        try:
            s = (root / name).stat()
            out.append((s.st_mtime_ns, s.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def key() -> tuple[str, tuple]:
    return str(store().root), stamp()


@st.cache_resource(max_entries=4, show_spinner=False)
def _manifests(root: str, stamp: tuple) -> list[dict]:
    return Store(Path(root)).list_runs()


def manifests() -> list[dict]:
    """All run manifests, newest first. Shared, not copied: read only."""
    return _manifests(*key())


@st.cache_data(max_entries=4, show_spinner=False)
def _runs(root: str, stamp: tuple) -> pd.DataFrame:
    return pd.DataFrame(views.run_rows(_manifests(root, stamp)))


def runs() -> pd.DataFrame:
    return _runs(*key())


@st.cache_data(max_entries=4, show_spinner=False)
def _leaderboard(root: str, stamp: tuple) -> pd.DataFrame:
    return pd.DataFrame(views.leaderboard_rows(Store(Path(root)), _manifests(root, stamp)))


def leaderboard() -> pd.DataFrame:
    return _leaderboard(*key())


@st.cache_data(max_entries=4, show_spinner=False)
def _exports(root: str, stamp: tuple) -> pd.DataFrame:
    return pd.DataFrame(views.export_rows(Store(Path(root)), _manifests(root, stamp)))


def exports() -> pd.DataFrame:
    return _exports(*key())


@st.cache_data(max_entries=64, show_spinner=False)
def _comparison(root: str, run_a: str, run_b: str, stamp: tuple) -> dict:
    store_ = Store(Path(root))
    a, b = store_.load(run_a), store_.load(run_b)
    cmp = compare_runs(a, b)
    return {"comparison": cmp.to_dict(), "cells": comparison_cells(cmp),
            "directions": [row_direction(r) for r in cmp.rows],
            "verdicts": significance_verdicts(a, b, cmp), "sample_tasks": sample_tasks(a, b)}


def comparison(run_a: str, run_b: str) -> dict:
    """compare_runs(A, B) as `wb compare --json` gives it, plus the table cells it prints."""
    return _comparison(str(store().root), run_a, run_b, stamp())


@st.cache_data(max_entries=32, show_spinner=False)
def _diffs(root: str, run_a: str, run_b: str, task: str, stamp: tuple) -> list[dict]:
    store_ = Store(Path(root))
    return sample_diffs(store_.load(run_a), store_.load(run_b), task)


def diffs(run_a: str, run_b: str, task: str) -> list[dict]:
    return _diffs(str(store().root), run_a, run_b, task, stamp())


@st.cache_data(max_entries=32, show_spinner=False)
def _run(root: str, run_id: str, stamp: tuple) -> dict:
    run = Store(Path(root)).load(run_id)
    return {"manifest": run.manifest, "metrics": run.metrics, "sample_files": run.sample_files()}


def run(run_id: str) -> dict:
    return _run(str(store().root), run_id, stamp())


@st.cache_data(max_entries=16, show_spinner=False)
def _curves(root: str, run_ids: tuple[str, ...], stamp: tuple) -> pd.DataFrame:
    return pd.DataFrame(views.train_curves(Store(Path(root)), list(run_ids)))


def curves(run_ids: list[str]) -> pd.DataFrame:
    return _curves(str(store().root), tuple(run_ids), stamp())


@st.cache_data(max_entries=16, show_spinner=False)
def _training_evals(root: str, run_id: str, stamp: tuple) -> pd.DataFrame:
    return pd.DataFrame(views.training_evals(Store(Path(root)), run_id, _manifests(root, stamp)))


def training_evals(run_id: str) -> pd.DataFrame:
    return _training_evals(str(store().root), run_id, stamp())


@st.cache_data(max_entries=4, show_spinner=False)
def _lineage(root: str, stamp: tuple) -> tuple[dict, list]:
    return store_lineage(_manifests(root, stamp))


def lineage() -> tuple[dict, list]:
    return _lineage(*key())


@st.cache_data(max_entries=16, show_spinner=False)
def _sweep_leaderboard(root: str, run_id: str, stamp: tuple) -> tuple[list[str], list[dict]]:
    from workbench.sweep.leaderboard import leaderboard

    store_ = Store(Path(root))
    return leaderboard(store_, store_.load(run_id).manifest.get("units") or [])


def sweep_leaderboard(run_id: str) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a sweep's leaderboard, as `wb sweep` prints it."""
    return _sweep_leaderboard(str(store().root), run_id, stamp())


@st.cache_data(max_entries=32, show_spinner=False)
def _pairwise_items(root: str, run_a: str, run_b: str, task: str, seed: int, stamp: tuple) -> list[dict]:
    store_ = Store(Path(root))
    return review_items.pairwise_items(store_.load(run_a), store_.load(run_b), task, seed)


def pairwise_items(run_a: str, run_b: str, task: str, seed: int) -> list[dict]:
    """The items of a blind pairwise review of A and B (review.items.pairwise_items)."""
    return _pairwise_items(str(store().root), run_a, run_b, task, seed, stamp())


@st.cache_data(max_entries=32, show_spinner=False)
def _rubric_items(root: str, run_id: str, task: str, label: str, stamp: tuple) -> list[dict]:
    return review_items.rubric_items(Store(Path(root)).load(run_id), task, label)


def rubric_items(run_id: str, task: str, label: str) -> list[dict]:
    return _rubric_items(str(store().root), run_id, task, label, stamp())


def clear() -> None:
    st.cache_data.clear()
    _manifests.clear()
