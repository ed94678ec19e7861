"""The ``bmil`` command: ``demos`` and ``evaluate`` (plain typed functions through jsonargparse).

Every command's flags come from the typed signature and docstring of its function below, so
``bmil demos --help`` documents itself. Problems the user can fix end in one ``bmil: error:`` line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Literal, Optional

from bmil.errors import BMILError


def demos(
    env: str,
    num: int = 10,
    seed: int = 0,
    out: Optional[str] = None,
    stop_on_success: bool = False,
    max_attempts: Optional[int] = None,
) -> None:
    """Generate expert demonstrations from the training start and save them atomically.

    Args:
        env: Environment short name (e.g. push, pickplace).
        num: Number of successful demonstrations to keep.
        seed: Seed of the expert's noise; the same seed gives the same demos.
        out: Output folder (default: demos/<env>_n<num>_s<seed>).
        stop_on_success: End each demo at its first success, as the original code did (default:
            run the full horizon so the demos also show holding the goal).
        max_attempts: Give up after this many episodes (default 5 * num + 10).
    """
    from bmil.demos import generate_demos

    meta = generate_demos(env, num, seed, out, stop_on_success, max_attempts)
    print(
        f"wrote {meta['episodes']} {env} demos ({meta['transitions']} transitions) to "
        f"{meta['path']} in {meta['seconds']:.1f} s; expert success "
        f"{meta['episodes']}/{meta['attempts']} = {100 * meta['expert_success_rate']:.1f}%"
    )


def evaluate(
    env: str,
    policy: Literal["expert", "random"] = "expert",
    episodes: int = 10000,
    training_episodes: int = 10,
    seed: int = 0,
    workers: Optional[int] = None,
    success: Literal["final", "any"] = "final",
    plot: Optional[str] = None,
    json_out: Optional[str] = None,
) -> None:
    """Measure a policy's training success and robustness (success from unseen start states).

    Args:
        env: Environment short name (e.g. push, pickplace).
        policy: Which policy: the scripted expert or uniform random actions.
        episodes: Number of robustness episodes, one per seeded start state.
        training_episodes: Number of episodes from the training start.
        seed: Seed of the start-state list and episode noise.
        workers: Worker processes (default: one per CPU core; 0 runs in this process).
        success: Judge success at the final step (as the paper's Table 1) or at any step.
        plot: Save the robustness figure (PNG) here.
        json_out: Save the results (rates, CIs, per-start outcomes) as JSON here.
    """
    from bmil.envs import get_domain
    from bmil.evaluation import Evaluator, RandomPolicy

    domain = get_domain(env)
    agent = domain.make_expert(seed) if policy == "expert" else RandomPolicy(domain.act_dim)
    t0 = time.perf_counter()
    with Evaluator(domain, workers) as evaluator:
        train = evaluator.training(agent, training_episodes, seed, success)
        robust = evaluator.robustness(agent, episodes, seed, success, progress=True)
    seconds = time.perf_counter() - t0
    print(f"[{policy}] training start  {train.summary()}")
    print(f"[{policy}] robustness      {robust.summary()}")
    print(f"evaluated in {seconds:.1f} s ({robust.steps.sum() / seconds:.0f} env-steps/s)")
    if plot:
        Path(plot).parent.mkdir(parents=True, exist_ok=True)
        domain.robustness_figure(robust).savefig(plot)
        print(f"figure saved to {plot}")
    if json_out:
        record = {
            "policy": policy,
            "training": train.to_dict(),
            "robustness": robust.to_dict(),
            "starts": robust.starts.tolist(),
            "success": robust.success.tolist(),
            "seconds": seconds,
        }
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(record))


COMMANDS = {"demos": demos, "evaluate": evaluate}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or argv[0] not in COMMANDS:
            known = ", ".join(COMMANDS)
            if argv and argv[0] not in ("-h", "--help"):
                raise BMILError(f"unknown command '{argv[0]}'. Commands: {known}.")
            print(f"usage: bmil {{{known}}} [--help]")
            return
        from jsonargparse import auto_cli

        auto_cli(COMMANDS, args=argv, as_positional=False)
    except BMILError as e:
        print(f"bmil: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("bmil: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
