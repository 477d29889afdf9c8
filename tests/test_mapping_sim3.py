"""Sim(3) fits and the pose graph of streamvggt.mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streamvggt.geometry import umeyama
from streamvggt.mapping.graph import Edge, PoseGraph, from_gtsam, to_gtsam
from streamvggt.mapping.sim3 import Sim3, fit_sim3, rotation_angle, umeyama_np

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation


def random_sim3(rng: np.random.Generator) -> Sim3:
    return Sim3(float(rng.uniform(0.3, 3.0)), Rotation.random(random_state=rng).as_matrix(), rng.normal(0, 2, 3))


def test_noise_free_sim3_recovered_to_1e6() -> None:
    rng = np.random.default_rng(0)
    truth = random_sim3(rng)
    src = rng.normal(0, 1, (500, 3)) + np.array([0, 0, 4])
    fit = fit_sim3(src, truth.apply(src), rng.uniform(0.5, 2.0, 500))
    assert abs(fit.transform.scale - truth.scale) < 1e-6
    assert np.abs(fit.transform.rotation - truth.rotation).max() < 1e-6
    assert np.abs(fit.transform.translation - truth.translation).max() < 1e-6
    assert fit.inlier_fraction == 1.0 and fit.residual < 1e-9


def test_irls_with_30_percent_outliers_within_1_percent_scale_and_half_degree() -> None:
    rng = np.random.default_rng(1)
    truth = random_sim3(rng)
    src = rng.normal(0, 1, (2000, 3)) + np.array([0, 0, 4])
    dst = truth.apply(src)
    dst = dst * (1 + rng.normal(0, 0.005, dst.shape))  # 0.5% noise
    outliers = rng.random(2000) < 0.3
    dst[outliers] = rng.uniform(-10, 10, (int(outliers.sum()), 3))
    plain = fit_sim3(src, dst, iterations=1)
    fit = fit_sim3(src, dst)
    angle = math.degrees(rotation_angle(fit.transform.rotation @ truth.rotation.T))
    assert abs(fit.transform.scale / truth.scale - 1) < 0.01
    assert angle < 0.5
    assert abs(fit.inlier_fraction - 0.7) < 0.05
    # The plain weighted Umeyama is pulled away by the outliers: IRLS is what makes the bound hold.
    assert abs(plain.transform.scale / truth.scale - 1) > 0.01


def test_numpy_umeyama_equals_geometry_umeyama() -> None:
    rng = np.random.default_rng(2)
    src, dst, w = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)), rng.uniform(0.1, 1, 300)
    scale, rot, trans = umeyama(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(w))
    ours = umeyama_np(src, dst, w)
    assert abs(ours.scale - float(scale)) < 1e-12
    assert np.abs(ours.rotation - rot.numpy()).max() < 1e-12
    assert np.abs(ours.translation - trans.numpy()).max() < 1e-12


def test_sim3_composition_inverse_and_extrinsic() -> None:
    rng = np.random.default_rng(3)
    a, b = random_sim3(rng), random_sim3(rng)
    x = rng.normal(size=(10, 3))
    assert np.allclose((a @ b).apply(x), a.apply(b.apply(x)), atol=1e-12)
    assert np.allclose((a @ a.inverse()).matrix(), np.eye(4), atol=1e-12)
    assert np.allclose(Sim3.from_matrix(a.matrix()).matrix(), a.matrix(), atol=1e-12)
    rigid = Sim3(1.0, a.rotation, a.translation)
    assert np.allclose(Sim3.from_extrinsic(rigid.extrinsic()).matrix(), rigid.matrix(), atol=1e-12)


def test_gtsam_conversion_round_trips() -> None:
    pytest.importorskip("gtsam")
    a = random_sim3(np.random.default_rng(4))
    back = from_gtsam(to_gtsam(a))
    assert np.allclose(back.matrix(), a.matrix(), atol=1e-12)
    x = np.array([0.3, -1.0, 2.0])
    assert np.allclose(np.asarray(to_gtsam(a).transformFrom(x)), a.apply(x), atol=1e-12)


def test_pose_graph_loop_removes_scale_and_rotation_drift() -> None:
    pytest.importorskip("gtsam")
    rng = np.random.default_rng(5)
    # A square loop of 40 keyframes whose odometry drifts in scale and heading; one loop edge closes it.
    true = [Sim3.identity()]
    for _ in range(1, 40):
        step = Sim3(1.0, Rotation.from_euler("y", 2 * np.pi / 40).as_matrix(), np.array([0.0, 0.0, 0.5]))
        true.append(true[-1] @ step)
    graph = PoseGraph()
    graph.add_node(true[0])
    for k in range(1, 40):
        rel = true[k - 1].inverse() @ true[k]
        drift = Sim3(1.01, Rotation.from_rotvec(rng.normal(0, 0.01, 3)).as_matrix(), np.zeros(3))
        measured = drift @ rel
        graph.add_node(graph.nodes[-1] @ measured)
        graph.add_edge(Edge(k - 1, k, measured, np.array([0.01] * 6 + [0.01])))
    before = np.mean([np.linalg.norm(n.translation - t.translation) for n, t in zip(graph.nodes, true, strict=True)])
    graph.add_edge(Edge(0, 39, true[0].inverse() @ true[39], np.array([0.001] * 6 + [0.001]), robust=3.0))
    report = graph.optimise(max_iterations=100, max_seconds=5.0)
    after = np.mean([np.linalg.norm(n.translation - t.translation) for n, t in zip(graph.nodes, true, strict=True)])
    assert report.final_error < report.initial_error
    assert after < 0.3 * before
    assert np.allclose(graph.nodes[0].matrix(), np.eye(4), atol=1e-9)  # the first keyframe is fixed


def test_fit_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        fit_sim3(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        fit_sim3(np.zeros((5, 3)), np.zeros((4, 3)))
