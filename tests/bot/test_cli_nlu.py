"""`omnibot nlu eval` / `nlu complaint-eval`: the command-line contract used for evaluation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "nlu"
TRAIN, TEST = FIXTURES / "clinc_train.csv", FIXTURES / "clinc_test.csv"
COMPLAINTS = Path(__file__).resolve().parents[2] / "flows" / "nlu" / "complaints_default.csv"


def _last_json(output: str) -> dict:
    last = output.strip().splitlines()[-1]
    return json.loads(last)


def _write(path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("text", "label")) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_eval_reports_and_ends_with_one_json_line() -> None:
    result = CliRunner().invoke(main, ["nlu", "eval", "--train", str(TRAIN), "--test", str(TEST)])
    assert result.exit_code == 0, result.output
    assert "in-scope accuracy" in result.output and "out-of-scope recall" in result.output
    res = _last_json(result.output)
    for key in ("accuracy", "macro_f1", "n_test", "p50_ms", "p99_ms", "inscope_accuracy", "oos_recall"):
        assert key in res
    assert res["n_test"] == 92 and res["n_oos"] == 20
    assert 0.75 <= res["inscope_accuracy"] <= 1 and 0.5 <= res["oos_recall"] <= 1
    assert 0 < res["p50_ms"] <= res["p99_ms"]


def test_eval_with_shots_samples_per_label(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["nlu", "eval", "--train", str(TRAIN), "--test", str(TEST),
                                       "--shots", "5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    res = _last_json(result.output)
    # 5 per intent (12) + 5 oos rows that only place the threshold
    assert res["n_train"] == 65 and res["shots"] == 5 and res["seed"] == 3
    assert "5 per label, seed 3" in result.output


def test_eval_without_oos_rows_reports_plain_accuracy(tmp_path: Path) -> None:
    rows = list(csv.reader(open(TEST, encoding="utf-8")))[1:]
    test = _write(tmp_path / "t.csv", [(t, lab) for t, lab in rows if lab != "oos"])
    result = CliRunner().invoke(main, ["nlu", "eval", "--train", str(TRAIN), "--test", str(test)])
    assert result.exit_code == 0, result.output
    res = _last_json(result.output)
    assert "oos_recall" not in res and res["n_test"] == 72 and res["accuracy"] >= 0.8


@pytest.mark.parametrize("command", ["eval", "complaint-eval"])
def test_bad_input_exits_non_zero_with_a_clear_message(command: str, tmp_path: Path) -> None:
    good = TRAIN if command == "eval" else COMPLAINTS
    cases = {
        "no such file": tmp_path / "missing.csv",
        "missing column label": _write(tmp_path / "cols.csv", [("hello", "x")], header=("text", "intent")),
        "no rows": _write(tmp_path / "empty.csv", []),
    }
    for expected, path in cases.items():
        for args in (["--train", str(path), "--test", str(good)], ["--train", str(good), "--test", str(path)]):
            result = CliRunner().invoke(main, ["nlu", command, *args])
            assert result.exit_code != 0
            assert "error:" in result.output and expected in result.output and str(path) in result.output


def test_eval_needs_two_intents(tmp_path: Path) -> None:
    train = _write(tmp_path / "one.csv", [("hi", "greet"), ("hello", "greet"), ("weather?", "oos")])
    result = CliRunner().invoke(main, ["nlu", "eval", "--train", str(train), "--test", str(TEST)])
    assert result.exit_code == 2 and "at least two labels" in result.output


def test_complaint_eval(tmp_path: Path) -> None:
    rows = list(csv.reader(open(COMPLAINTS, encoding="utf-8")))[1:]
    train = _write(tmp_path / "train.csv", rows[::2])
    test = _write(tmp_path / "test.csv", rows[1::2])
    result = CliRunner().invoke(main, ["nlu", "complaint-eval", "--train", str(train), "--test", str(test)])
    assert result.exit_code == 0, result.output
    res = _last_json(result.output)
    assert res["n_test"] == len(rows[1::2]) and res["macro_f1"] >= 0.8 and "accuracy" in res


def test_complaint_eval_refuses_other_labels(tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.csv", [("my parcel is late", "angry"), ("thanks", "not_complaint")])
    result = CliRunner().invoke(main, ["nlu", "complaint-eval", "--train", str(bad), "--test", str(COMPLAINTS)])
    assert result.exit_code == 2 and "labels must be complaint or not_complaint" in result.output
