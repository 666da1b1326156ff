"""``btnet-lab sweep``: registered on the command, validates before any work (a bad study is
one error line, exit 2, nothing written), ``--check`` lists the trials, default is the demo."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ablations.cli import add_sweep_parser
from btnet_core.errors import ConfigError
from search_spaces import DEMO


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="btnet-lab")
    add_sweep_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_sweep_defaults_to_the_demo_study():
    """With no argument, sweep runs the shipped demo into ./results (the README's job)."""
    args = parse(["sweep"])
    assert args.study == DEMO and args.storage is None and not args.resume
    assert args.address is None and callable(args.handler)


def test_options_reach_the_handler():
    """--storage, --address and --resume are parsed as given."""
    args = parse(
        ["sweep", "paper_ablation", "--storage", "s3://b/r", "--address", "auto", "--resume"]
    )
    assert (args.study, args.storage, args.address, args.resume) == (
        "paper_ablation",
        "s3://b/r",
        "auto",
        True,
    )


def test_check_lists_the_trials_without_running(capsys, workdir):
    """--check validates and prints every trial of an ablation; nothing is written."""
    args = parse(["sweep", "demo", "--check", "--storage", f"{workdir}/store"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "valid ablation 'demo'" in out and out.count("(seed ") == 8
    assert not Path(f"{workdir}/store").exists()


def test_check_also_checks_the_data_folder(workdir, capsys):
    """--check fails on a data folder that does not exist (a warning with --address)."""
    study = Path(workdir) / "faces.yaml"
    study.write_text(
        "name: faces\nkind: ablation\nmetric: acc_112_7\nmode: max\nseeds: [0]\n"
        f"base: {{data: {{source: folder, path: {workdir}/no_faces}}}}\n"
        "variants:\n  no_bct: {compat.type: none}\n"
    )
    args = parse(["sweep", str(study), "--check"])
    with pytest.raises(ConfigError, match=r"faces\.yaml: base: data\.path .*no_faces does not"):
        args.handler(args)
    args = parse(["sweep", str(study), "--check", "--address", "auto"])
    assert args.handler(args) == 0
    assert "valid ablation 'faces'" in capsys.readouterr().out


def test_bad_study_is_one_error_and_nothing_is_written(workdir):
    """A study btnet_core would reject fails before Ray starts; the store is not created."""
    bad = Path(workdir) / "bad.yaml"
    bad.write_text(
        "name: bad\nkind: ablation\nmetric: acc_112_7\nmode: max\n"
        "variants:\n  wide: {model.width: -1}\n"
    )
    args = parse(["sweep", str(bad), "--storage", f"{workdir}/store"])
    with pytest.raises(ConfigError, match=r"bad\.yaml:6: variants\.wide: model\.width: must be"):
        args.handler(args)
    assert not Path(f"{workdir}/store").exists()


def test_main_turns_a_bad_study_into_exit_status_2(workdir, capsys):
    """Through the btnet-lab command: one line on stderr and status 2."""
    main = pytest.importorskip("btnet_lab.cli").main
    bad = Path(workdir) / "bad.yaml"
    bad.write_text(
        "name: bad\nkind: sweep\nmetric: acc_112_7\nmode: max\nspace:\n"
        "  stage2.lr: {uniform: [0.1, 0.01]}\n"
    )
    assert main(["sweep", str(bad), "--storage", f"{workdir}/store"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml:6: space.stage2.lr.uniform: empty range" in err[0]
