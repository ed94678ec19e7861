import pytest

from bmil.cli import main


def test_demos_command(tmp_path, capsys):
    main(["demos", "--env", "push", "--num", "1", "--seed", "0", "--out", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert "wrote 1 push demos" in out and "expert success" in out
    assert (tmp_path / "d" / "bmil_demos.json").is_file()


def test_evaluate_command(tmp_path, capsys):
    png, js = tmp_path / "fig.png", tmp_path / "r.json"
    main(["evaluate", "--model.env", "push", "--policy", "random", "--episodes", "4",
          "--training_episodes", "1", "--workers", "0", "--plot", str(png), "--json_out", str(js)])
    out = capsys.readouterr().out
    assert "over 4 episodes" in out and png.stat().st_size > 1000
    import json

    record = json.loads(js.read_text())
    assert len(record["success"]) == 4 and record["robustness"]["episodes"] == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demos", "--env", "pikplace"], "Unknown environment 'pikplace'"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        (["demos", "--env", "push", "--num", "0"], "--num must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_flag_is_rejected(capsys):
    with pytest.raises(SystemExit):
        main(["demos", "--env", "push", "--nmu", "3"])
    assert "--nmu" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("", "holds no settings"),
    ("# only a comment\n", "holds no settings"),
    ("model:\n  init_args: {env: push\n", "is not valid YAML at line 3, column 1"),
    ("config: no_such_family.yaml\n", "no_such_family.yaml' not found"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, content, message, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("bmil: error:") == 1 and message in err and "usage" not in err
    assert str(tmp_path) in err


def test_demos_refuse_a_foreign_folder_before_generating_and_fill_an_empty_one(tmp_path, capsys):
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        main(["demos", "--env", "push", "--num", "1", "--out", str(foreign), "--max_attempts", "1"])
    err = capsys.readouterr().err
    assert "exists and is not a bmil demonstration dataset; refusing to overwrite it" in err
    assert "demos push" not in err and (foreign / "mine.txt").read_text() == "keep me"  # nothing generated
    empty = tmp_path / "empty"
    empty.mkdir()
    main(["demos", "--env", "push", "--num", "1", "--out", str(empty)])
    assert (empty / "bmil_demos.json").is_file()
