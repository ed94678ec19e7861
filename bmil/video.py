"""Rollout videos, rendered offscreen with MuJoCo's renderer.

``record_videos`` replays chosen episodes of an evaluation (the same starts and episode seeds, so
the same outcomes) and writes one GIF per episode, named by its start and outcome. ``offscreen``
runs it in a fresh process whose MuJoCo renders with EGL (``MUJOCO_GL=egl``, unless the user chose
a backend): MuJoCo reads that setting when first imported, and this process has imported it already.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from bmil.errors import BMILError
from bmil.evaluation.result import EvalResult
from bmil.evaluation.rollout import episode_seed, run_episodes
from bmil.numerics import pinned_environment
from bmil.system import environment


def pick_episodes(result: EvalResult, n: int) -> list[int]:
    """Up to ``n`` start indices of ``result``: failures and successes alternately, first ones first."""
    fails, wins = list(np.flatnonzero(~result.success)), list(np.flatnonzero(result.success))
    picked = []
    while len(picked) < n and (fails or wins):
        for pool in (fails, wins):
            if pool and len(picked) < n:
                picked.append(int(pool.pop(0)))
    return picked


def offscreen(domain, policy, result: EvalResult, n: int, seed: int, folder: str | Path, **kwargs) -> list[Path]:
    """``record_videos`` in a fresh process set up for offscreen rendering."""
    egl = {"MUJOCO_GL": "egl"} if not os.environ.get("MUJOCO_GL") and sys.platform.startswith("linux") else {}
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        with environment(egl), pinned_environment():  # the worker starts in submit, and takes them
            future = pool.submit(record_videos, domain, policy, result, n, seed, folder, **kwargs)
        return future.result()


def record_videos(domain, policy, result: EvalResult, n: int, seed: int, folder: str | Path,
                  width: int = 320, height: int = 240, success_mode: str = "final",
                  batch_size: int = 16) -> list[Path]:
    """Replay ``n`` of ``result``'s episodes (failures and successes) and write them as GIFs.

    An episode is replayed inside the whole batch it was evaluated in (``batch_size``, the
    evaluator's), so that a policy whose noise is drawn per batch (VINS) acts exactly as measured."""
    import imageio.v3 as iio

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in pick_episodes(result, n):
        lo = index - index % batch_size
        starts = np.asarray(result.starts)[lo: lo + batch_size]
        seeds = [episode_seed(seed, lo + i) for i in range(len(starts))]
        frames, success = _episode_frames(domain, policy, starts, seeds, index - lo, width, height, success_mode)
        if success != bool(result.success[index]):  # a replay is the same episode: say so if it is not
            print(f"note: start {index} replayed as a {'success' if success else 'failure'}, measured otherwise "
                  "(the policy or env is not deterministic given its seed, or its batch differed: DDP)")
        path = folder / f"start{index:05d}_{'success' if success else 'failure'}.gif"
        iio.imwrite(path, np.stack(frames), duration=1000 // 25, loop=0)
        paths.append(path)
    return paths


def _episode_frames(domain, policy, starts, seeds: list[int], position: int, width: int, height: int,
                    success_mode: str):
    """The batch of episodes as ``run_episodes`` runs it, ``position``'s rendered after the reset
    and every step."""
    import mujoco

    envs = [domain.make_env() for _ in starts]
    model, data = _mujoco_handles(envs[position], domain.name)
    try:
        renderer = mujoco.Renderer(model, height, width)
    except Exception as e:  # mujoco raises FatalError or RuntimeError without a GL context
        raise BMILError(f"MuJoCo cannot render here with MUJOCO_GL={os.environ.get('MUJOCO_GL')} "
                        f"({type(e).__name__}: {e}); set MUJOCO_GL to a backend this machine has (egl, "
                        "osmesa or glfw).") from None
    camera = _camera(model, getattr(domain, "render_camera", None))
    frames = []

    def render():
        renderer.update_scene(data, camera=camera)
        frames.append(renderer.render().copy())

    envs[position] = _RenderingEnv(envs[position], render)
    success = run_episodes(envs, policy, starts, seeds, domain.horizon, success_mode,
                           stop_on_success=domain.terminates_on_success).success
    renderer.close()
    for env in envs:
        env.close()
    return frames, bool(success[position])


class _RenderingEnv:
    """``env`` with a frame taken after ``reset`` and after every ``step``."""

    def __init__(self, env, render):
        self.env, self.render = env, render

    def close(self):
        self.env.close()

    def reset(self, **kwargs):
        out = self.env.reset(**kwargs)
        self.render()
        return out

    def step(self, action):
        out = self.env.step(action)
        self.render()
        return out


def _mujoco_handles(env, name: str):
    """The MuJoCo model and data of an env: on its unwrapped env, or one attribute below it (a maze's
    point or ant)."""
    import mujoco

    u = env.unwrapped
    for holder in (u, *vars(u).values()):
        model, data = getattr(holder, "model", None), getattr(holder, "data", None)
        if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData):
            return model, data
    raise BMILError(f"'{name}' exposes no MuJoCo model and data to render (env.unwrapped.model/.data).")


def _camera(model, settings: dict | None):
    import mujoco

    camera = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, camera)
    for key, value in (settings or {}).items():
        if key == "lookat":
            camera.lookat[:] = value
        else:
            setattr(camera, key, value)
    return camera


def log_gifs(logger, tag: str, paths: list[Path], step: int) -> None:
    """The GIFs as TensorBoard images (animated in the Images tab), one tag per episode."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    import imageio.v3 as iio

    experiment = getattr(logger, "experiment", None)
    if not hasattr(experiment, "file_writer"):
        return
    for path in paths:
        frames = iio.imread(path, index=None)
        image = Summary.Image(height=frames.shape[1], width=frames.shape[2], colorspace=3,
                              encoded_image_string=path.read_bytes())
        experiment.file_writer.add_summary(Summary(value=[Summary.Value(tag=f"{tag}/{path.stem}", image=image)]), step)
    experiment.flush()
