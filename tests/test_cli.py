"""The `crossmed` command: exit codes of deidentify, keygen refusing to overwrite, params --check."""

import json
from pathlib import Path

from crossmed.cli import EXIT_REJECTED, EXIT_USAGE, main
from conftest import REPO


def test_deidentify_exit_codes_and_summary(tiny_study, tmp_path, capsys, copy_of):
    key = tmp_path / "site.key"
    assert main(["keygen", str(key)]) == 0
    assert main(["keygen", str(key)]) == EXIT_USAGE  # never overwrites a site key
    src = copy_of(Path(tiny_study.paths.raw) / "EE" / "dicom", "src")
    capsys.readouterr()
    assert main(["deidentify", str(src), str(tmp_path / "out"), "--key-file", str(key), "--patient-prefix", "EE-"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rejected"] == 0 and summary["written"] == summary["read"] > 0
    assert key.read_text().strip() not in (tmp_path / "out" / "audit.csv").read_text()
    (src / "README.txt").write_text("not DICOM")
    assert main(["deidentify", str(src), str(tmp_path / "out2"), "--key-file", str(key),
                 "--site-records", str(tmp_path / "site")]) == EXIT_REJECTED
    assert "README.txt" in (tmp_path / "site" / "rejected_sources.csv").read_text(encoding="utf-8")
    assert main(["deidentify", str(src), str(tmp_path / "out3")]) == EXIT_USAGE  # no key anywhere
    assert not (tmp_path / "out3").exists()
    assert main(["deidentify", str(tmp_path / "nowhere"), str(tmp_path / "out4"), "--key-file", str(key)]) == EXIT_USAGE


def test_params_check(capsys):
    assert main(["params", "--check", "--path", str(REPO / "params.yaml"), "--conf-dir", str(REPO / "conf")]) == 0
    assert "agrees" in capsys.readouterr().out


def test_every_command_and_argument_has_help_text():
    import argparse

    from crossmed.cli import build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helped = {c.dest for c in commands._choices_actions if c.help}
    assert helped == set(commands.choices), "every command has a line in `crossmed --help`"
    parsers = list(commands.choices.items())
    while parsers:  # every command and nested command (`crossmed site join`), every argument
        name, parser = parsers.pop()
        missing = [a.dest for a in parser._actions if not a.help and not isinstance(a, argparse._HelpAction)]
        assert not missing, f"`crossmed {name}`: no help for {missing}"
        for nested in (a for a in parser._actions if isinstance(a, argparse._SubParsersAction)):
            assert {c.dest for c in nested._choices_actions if c.help} == set(nested.choices), f"`crossmed {name}`"
            parsers += [(f"{name} {sub}", sub_parser) for sub, sub_parser in nested.choices.items()]
