"""Every command in the README's ```bash blocks runs, in a short form (issue 54): the README's
commands cannot rot.

``SHORT_FORMS`` maps each README command to the arguments that make it tiny (few epochs, steps and
episodes, evaluations in process) or to a rewrite where appending is not enough. A README command
without an entry, or an entry whose command left the README, fails
``test_every_readme_command_has_a_short_form``, so a new command cannot go untested. The commands
of one chain run in README order in one folder, so the later ones find what the earlier ones wrote
at the README's own relative paths (``runs/pickplace_bmil/version_0/...``)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest
import torch
import yaml
from probes import use_instant_fits

from bmil.cli import main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


# --- reading the README ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Command:
    key: str  # the command as written, comments dropped and whitespace collapsed: the table's key
    argv: tuple[str, ...]


def _scan(line: str, quote: Optional[str]) -> tuple[str, Optional[str]]:
    """``line`` without its comment, and the quote still open at its end, given the one open at its
    start (a quoted argument may span lines, as the reproduce command's JSON does)."""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):  # bash: a comment starts a word
            return line[:i], None
    return line, quote


def bash_commands(markdown: str) -> list[Command]:
    """The commands of the ```bash blocks: lines ending with a backslash joined, comments dropped,
    arguments split as bash splits them (quotes, including quotes over several lines)."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", markdown, re.S | re.M):
        source, quote = "", None
        for line in block.splitlines():
            code, quote = _scan(line, quote)
            if quote is None and code.rstrip().endswith("\\"):
                source += code.rstrip()[:-1] + " "
                continue
            source += code + "\n"
            if quote is None:
                if source.strip():
                    commands.append(Command(" ".join(source.split()), tuple(shlex.split(source))))
                source = ""
        assert quote is None and not source.strip(), f"a README bash block ends inside a command: {source!r}"
    return commands


def makefile_recipe(target: str) -> tuple[dict[str, str], list[str]]:
    """The environment assignments and the command of ``make <target>``'s last recipe line (its
    command; the lines before set up), with ``$(BIN)/`` dropped: the program as the venv has it."""
    lines = (REPO / "Makefile").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(rf"{re.escape(target)}\s*:", line)), None)
    assert start is not None, f"the Makefile has no '{target}' target, which the README's 'make {target}' runs"
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    assert recipe, f"the Makefile's '{target}' target has no recipe"
    words = shlex.split(recipe[-1])
    env = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env, [re.sub(r"^\$\(BIN\)/", "", words[0]), *words[1:]]


# --- short forms -----------------------------------------------------------------------------------

# Few epochs, demos and policy steps; the backwards model trained a fixed 2 steps, not to convergence.
TINY_TRAINING = ("--trainer.max_epochs", "2", "--model.demos.num", "2", "--model.policy.steps_per_epoch", "5")
TINY_BMIL = ("--model.model.training", "steps", "--model.model.steps", "2")
TINY_VINS = ("--model.vins.value_steps", "2", "--model.vins.model_steps", "2", "--model.vins.candidates", "8")
TINY_CCIL = ("--model.ccil.model_steps", "5")
# Every evaluation a few episodes and in this process (starting worker processes would cost more
# than the episodes); validation every epoch, so that best.ckpt exists as the README uses it.
TINY_EVALUATIONS = (
    "--training_success.every_n_epochs", "2", "--training_success.episodes", "1",
    "--validation.every_n_epochs", "1", "--validation.episodes", "4",
    "--robustness.every_n_epochs", "0", "--robustness.final_episodes", "4",
    "--training_success.workers", "0", "--validation.workers", "0", "--robustness.workers", "0",
)
TINY_FIT = TINY_TRAINING + TINY_EVALUATIONS
TINY_EVALUATE = ("--episodes", "4", "--training_episodes", "1", "--workers", "0")
# bmil reproduce's runs: its --domain_extra overlays come after --extra, so this overlay is added
# after each of them (where it sets what they set, the later file wins). Method-neutral keys only:
# one file shortens BC, VINS and BMIL, so VINS keeps its shipped value and model steps: one epoch.
TINY_STUDY_OVERLAY = {
    "trainer": {"max_epochs": 1},
    "training_success": {"every_n_epochs": 1, "episodes": 1},
    "robustness": {"every_n_epochs": 0, "final_episodes": 4},
    "validation": {"every_n_epochs": 0},
    "model.init_args.demos.num": 2,
    "model.init_args.policy.steps_per_epoch": 5,
}


@dataclass(frozen=True)
class Short:
    """How one README command runs here: in ``chain`` (commands of one chain share a folder and run
    in README order), with ``extra`` appended or made by ``rewrite`` (argv, folder) -> (env, argv);
    ``expect`` (folder, output) checks what the README says the command leaves behind; ``run``
    False: only ``rewrite`` and ``expect`` (``make test`` would run this test again)."""

    chain: str
    extra: tuple[str, ...] = ()
    rewrite: Optional[Callable[[list[str], Path], tuple[dict[str, str], list[str]]]] = None
    expect: Optional[Callable[[Path, str], None]] = None
    run: bool = True


def _files(*paths: str) -> Callable[[Path, str], None]:
    def expect(folder: Path, output: str) -> None:
        missing = [p for p in paths if not (folder / p).is_file()]
        assert not missing, f"not written: {missing}"
    return expect


def _fit_wrote(run: str, method: str) -> Callable[[Path, str], None]:
    """A fit's run folder as the README describes it, for ``method``, with its final test printed."""
    def expect(folder: Path, output: str) -> None:
        _files(f"{run}/config.yaml", f"{run}/checkpoints/last.ckpt", f"{run}/robustness_final.json")(folder, output)
        config = yaml.safe_load((folder / run / "config.yaml").read_text())
        assert config["model"]["class_path"] == f"bmil.methods.{method}"
        assert "final robustness (the last policy)" in output
    return expect


def _make(target: str):
    def rewrite(argv: list[str], folder: Path) -> tuple[dict[str, str], list[str]]:
        assert argv == ["make", target]
        return makefile_recipe(target)
    return rewrite


def _make_test_runs_the_suite(folder: Path, output: str) -> None:
    env, argv = makefile_recipe("test")
    assert argv[:3] == ["python", "-m", "pytest"], argv  # not run here: it would run this test again


def _check_describes_the_run_without_training(folder: Path, output: str) -> None:
    assert re.search(r"core.minutes", output), output[-2000:]
    # No run folder: the fit the README runs next is version_0, as the evaluate command expects.
    assert not (folder / "runs" / "pickplace_bmil").exists()


def _overrides_reached_the_run(folder: Path, output: str) -> None:
    _fit_wrote("runs/pickplace_bmil/version_1", "BMIL")(folder, output)
    config = yaml.safe_load((folder / "runs/pickplace_bmil/version_1/config.yaml").read_text())
    assert config["model"]["init_args"]["traces"]["selection_coef"] == 10.0 and config["seed_everything"] == 3


def _resumed_in_its_own_folder(folder: Path, output: str) -> None:
    ckpt = torch.load(folder / "runs/pickplace_bmil/version_0/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["epoch"] == 2, "the resumed run did not train its third epoch into version_0"
    # version_1 is the overrides command's run; the resumed run made no folder of its own.
    assert sorted(p.name for p in (folder / "runs/pickplace_bmil").iterdir()) == ["version_0", "version_1"]


def _printed(text: str, output: str) -> None:
    assert text in output, output[-3000:]


def _evaluated(folder: Path, output: str) -> None:
    _files("fig.png", "out.json")(folder, output)
    assert len(json.loads((folder / "out.json").read_text())["success"]) == 4
    assert "[trained] robustness" in output


def _short_table1(argv: list[str], folder: Path) -> tuple[dict[str, str], list[str]]:
    """The README's table1 study on one cheap domain (push), one seed, each fit tiny; its
    --domain_extra kept (push's runs take its Fetch overlay), with the tiny overlay after each."""
    overlay = folder / "tiny_study.yaml"
    overlay.write_text(yaml.safe_dump(TINY_STUDY_OVERLAY))
    extra = json.loads(_value(argv, "--domain_extra"))
    argv = _replaced(argv, "--domain_extra", json.dumps({k: f"{v} --config {overlay}" for k, v in extra.items()}))
    return {}, _replaced(_replaced(argv, "--seeds", "1"), "--domains", "push")


def _table1_tabulated(folder: Path, output: str) -> None:
    study = folder / "results" / "table1"
    results = sorted(study.glob("runs/*/version_0/result.json"))
    assert len(results) == 3, f"BC, VINS and BMIL on push should each finish: {output[-3000:]}"
    assert re.search(r"^\| push \|", (study / "table.md").read_text(), re.M)


def _short_tune(argv: list[str], folder: Path) -> tuple[dict[str, str], list[str]]:
    """The README's tune on tiny fits: one trial per method, no finalists and no final test (test_tune
    runs those stages), one job."""
    tiny = folder / "tiny_tune.yaml"
    tiny.write_text(yaml.safe_dump({**TINY_STUDY_OVERLAY, "trainer": {"max_epochs": 2},
                                    "validation": {"every_n_epochs": 1, "episodes": 4, "workers": 0},
                                    "robustness": {"every_n_epochs": 0, "final_episodes": 4, "workers": 0},
                                    "training_success": {"every_n_epochs": 0, "workers": 0},
                                    "model.init_args.model.training": "steps", "model.init_args.model.steps": 2}))
    config = argv.index("--config") + 2
    argv = [*argv[:config], "--config", str(tiny), *argv[config:]]
    return {}, [*_replaced(argv, "--trials", "1"), "--finalists", "0", "--final_seeds", "0", "--jobs", "1"]


def _tuned(folder: Path, output: str) -> None:
    _files("tune/umaze/tuned_bmil.yaml", "tune/umaze/tuned_bc.yaml", "tune/umaze/table.md")(folder, output)
    assert "bmil trial 0: validation" in output and "bc trial 0: validation" in output


def _fit_took_the_tuned_settings(folder: Path, output: str) -> None:
    tuned = yaml.safe_load((folder / "tune/umaze/tuned_bmil.yaml").read_text())["model"]["init_args"]
    config = yaml.safe_load((folder / "runs/pointmaze_umaze/version_1/config.yaml").read_text())["model"]["init_args"]
    assert config["demo_ratio"] == tuned["demo_ratio"] and config["traces"]["length"] == tuned["traces"]["length"]


def _value(argv: list[str], flag: str) -> str:
    assert flag in argv, f"the README command no longer has {flag}; update its short form"
    return argv[argv.index(flag) + 1]


def _replaced(argv: list[str], flag: str, value: str) -> list[str]:
    _value(argv, flag)
    i = argv.index(flag) + 1
    return [*argv[:i], value, *argv[i + 1:]]


SHORT_FORMS: dict[str, Short] = {
    # Quick start
    "make fit": Short("make_fit", TINY_FIT + TINY_BMIL, rewrite=_make("fit"),
                      expect=_fit_wrote("runs/pickplace_quick/version_0", "BMIL")),
    "make test": Short("make_test", rewrite=_make("test"), expect=_make_test_runs_the_suite, run=False),
    # Training, then evaluation of what it trained
    "bmil check --config conf/pickplace.yaml":
        Short("pickplace", TINY_FIT + TINY_BMIL, expect=_check_describes_the_run_without_training),
    "bmil fit --config conf/pickplace.yaml":
        Short("pickplace", TINY_FIT + TINY_BMIL, expect=_fit_wrote("runs/pickplace_bmil/version_0", "BMIL")),
    "bmil fit --config conf/pickplace.yaml --config conf/bc.yaml":
        Short("pickplace", TINY_FIT, expect=_fit_wrote("runs/pickplace_bc/version_0", "BC")),
    "bmil fit --config conf/pickplace.yaml --config conf/vins_pickplace.yaml":
        Short("pickplace", TINY_FIT + TINY_VINS, expect=_fit_wrote("runs/pickplace_vins/version_0", "VINS")),
    "bmil fit --config conf/pickplace.yaml --model bmil.methods.CCIL":
        Short("pickplace", TINY_FIT + TINY_CCIL, expect=_fit_wrote("runs/pickplace_ccil/version_0", "CCIL")),
    "bmil fit --config conf/pickplace.yaml --model.traces.selection_coef 10 --seed_everything 3":
        Short("pickplace", TINY_FIT + TINY_BMIL, expect=_overrides_reached_the_run),
    # One epoch more than the first fit; the method's settings must be the checkpoint's.
    "bmil fit --config conf/pickplace.yaml --ckpt_path runs/pickplace_bmil/version_0/checkpoints/last.ckpt":
        Short("pickplace", TINY_FIT + TINY_BMIL + ("--trainer.max_epochs", "3"), expect=_resumed_in_its_own_folder),
    "bmil evaluate --config runs/pickplace_bmil/version_0/config.yaml --ckpt_path "
    "runs/pickplace_bmil/version_0/checkpoints/last.ckpt --episodes 10000 --plot fig.png --json_out out.json":
        Short("pickplace", TINY_EVALUATE, expect=_evaluated),
    "bmil evaluate --config conf/pickplace.yaml --policy expert --episodes 10000":
        Short("pickplace", TINY_EVALUATE, expect=lambda folder, output: _printed("[expert] robustness", output)),
    "bmil fit --config conf/point_umaze.yaml --config conf/overlays/maze_quick.yaml":
        Short("mazes", TINY_FIT + TINY_BMIL, expect=_fit_wrote("runs/point_umaze_bmil/version_0", "BMIL")),
    "bmil fit --config conf/ant_umaze.yaml --config conf/overlays/ant_quick.yaml --config conf/bc.yaml":
        Short("mazes", TINY_FIT, expect=_fit_wrote("runs/ant_umaze_bc/version_0", "BC")),
    # Reproducing the paper
    "bmil reproduce table1 --seeds 5 --out results/table1 --domains "
    "pickplace,push,point_umaze,point_room5x11,point_corridor7x7,ant_umaze,ant_room5x11,ant_corridor7x7,relocate "
    "--domain_extra '{\"pickplace,push\": \"--config conf/overlays/fetch_ablation_eval.yaml\", "
    "\"point_*\": \"--config conf/overlays/maze_table1_eval.yaml\", \"ant_*\": \"--config "
    "conf/overlays/ant_table1_eval.yaml\", \"relocate\": \"--config conf/overlays/relocate_table1_eval.yaml\"}'":
        Short("reproduce", rewrite=_short_table1, expect=_table1_tabulated),
    # Your own task: fit, export, load
    "bmil fit --config conf/examples/pointmaze_umaze.yaml":
        Short("own_task", TINY_FIT + TINY_BMIL,
              expect=_files("runs/pointmaze_umaze/version_0/checkpoints/best.ckpt")),
    "bmil export --ckpt_path runs/pointmaze_umaze/version_0/checkpoints/best.ckpt --out policy.pt":
        Short("own_task", expect=_files("policy.pt", "policy.json")),
    "python -c \"import bmil; policy = bmil.load_policy('policy.pt')\"": Short("own_task"),
    "bmil tune --config conf/examples/pointmaze_umaze.yaml --methods bmil,bc --trials 20 --out tune/umaze":
        Short("own_task", rewrite=_short_tune, expect=_tuned),
    "bmil fit --config conf/examples/pointmaze_umaze.yaml --config tune/umaze/tuned_bmil.yaml":
        Short("own_task", TINY_FIT + TINY_BMIL, expect=_fit_took_the_tuned_settings),
}
FAST_CHAINS = {"make_test"}


# --- running them ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_demos(tmp_path_factory) -> Path:
    """One demos/ for every chain: a domain's tiny demo set is generated on first use, once."""
    return tmp_path_factory.mktemp("demos")


def _own_task_demos(folder: Path, monkeypatch) -> None:
    """The tutorial's step 1 (docs/your-own-task.md): its Minari demos, which the example config reads."""
    from bmil.examples import pointmaze_demos

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(folder / "minari"))
    pointmaze_demos.write_minari("pointmaze/umaze-bmil-v0", 2)


def _own_task_setup(folder: Path, monkeypatch) -> None:
    """The tutorial's demos, and the tune's fits ending at once (probes.InstantFits): the chain checks
    the tune's command, stages and outputs, which the fit after it reads; test_tune's real tune trains."""
    _own_task_demos(folder, monkeypatch)
    use_instant_fits(monkeypatch)


CHAIN_SETUP = {"own_task": _own_task_setup}


def _run(env: dict[str, str], argv: list[str], folder: Path, capsys, monkeypatch) -> str:
    """``bmil`` in this process (as ``bmil`` would run it, without a second start-up), anything else
    as a process in ``folder``; its output, or a failure naming the command."""
    if argv[0] == "bmil":
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        try:
            main(argv[1:])
        except SystemExit as e:
            if e.code not in (0, None):
                pytest.fail(f"{shlex.join(argv)} exited {e.code}:\n{_errors(capsys.readouterr().err)}")
        captured = capsys.readouterr()
        return captured.out + captured.err
    program = sys.executable if argv[0] == "python" else argv[0]
    done = subprocess.run([program, *argv[1:]], cwd=folder, env={**os.environ, **env}, capture_output=True, text=True)
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{_errors(done.stderr)}"
    return done.stdout + done.stderr


def _errors(stderr: str) -> str:
    """The lines of ``stderr`` that say what went wrong (a usage text can bury them), else its end."""
    lines = [line for line in stderr.splitlines() if "error" in line.lower()]
    return "\n".join(lines[-10:]) or stderr[-3000:]


def test_every_readme_command_has_a_short_form():
    written = [c.key for c in bash_commands(README.read_text())]
    untested = [key for key in written if key not in SHORT_FORMS]
    gone = [key for key in SHORT_FORMS if key not in written]
    assert not untested, f"README commands without a short form in SHORT_FORMS (add one): {untested}"
    assert not gone, f"SHORT_FORMS entries no longer in the README (remove or update them): {gone}"


def test_bash_blocks_are_read_as_bash_splits_them():
    markdown = ("text\n```bash\nbmil fit --config a.yaml \\\n    --x 1   # a comment\n\n"
                "bmil reproduce --extra '{\"a\": \"b # not a comment\",\n  \"c\": 1}'  # one\n```\n"
                "```python\nignored()\n```\n```bash\necho \"it's\" # done\n```\n")
    assert [(c.key, c.argv) for c in bash_commands(markdown)] == [
        ("bmil fit --config a.yaml --x 1", ("bmil", "fit", "--config", "a.yaml", "--x", "1")),
        ("bmil reproduce --extra '{\"a\": \"b # not a comment\", \"c\": 1}'",
         ("bmil", "reproduce", "--extra", "{\"a\": \"b # not a comment\",\n  \"c\": 1}")),
        ("echo \"it's\"", ("echo", "it's")),
    ]


def _anchors(markdown: str) -> set[str]:
    """The heading anchors GitHub makes: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [README, *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name)
def test_links_name_files_and_headings_that_exist(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)  # code is not links
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        name, _, anchor = target.partition("#")
        path = (page.parent / name) if name else page
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path.read_text())):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


@pytest.mark.parametrize("chain", [
    pytest.param(chain, marks=() if chain in FAST_CHAINS else pytest.mark.slow)
    for chain in dict.fromkeys(short.chain for short in SHORT_FORMS.values())
])
def test_readme_commands_run_in_short_form(chain, tmp_path, shared_demos, monkeypatch, capsys):
    """The chain's README commands in README order, in a folder that has the repository's configs
    and the shared demos, as the README's relative paths expect."""
    (tmp_path / "conf").symlink_to(REPO / "conf")
    (tmp_path / "demos").symlink_to(shared_demos)
    monkeypatch.chdir(tmp_path)
    if chain in CHAIN_SETUP:
        CHAIN_SETUP[chain](tmp_path, monkeypatch)
    commands = [c for c in bash_commands(README.read_text())
                if c.key in SHORT_FORMS and SHORT_FORMS[c.key].chain == chain]
    assert commands, f"no README command of chain {chain} (test_every_readme_command_has_a_short_form says which)"
    for command in commands:
        short = SHORT_FORMS[command.key]
        env, argv = short.rewrite(list(command.argv), tmp_path) if short.rewrite else ({}, list(command.argv))
        argv = [*argv, *short.extra]
        output = _run(env, argv, tmp_path, capsys, monkeypatch) if short.run else ""
        if short.expect:
            short.expect(tmp_path, output)
