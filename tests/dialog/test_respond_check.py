"""dialog.eval.respond_check on tiny iEvaLM-format files and the 20-movie fixture resources: each
dialog once from its longest sample, every seeker turn through respond, raising turns counted,
listed and turned into exit status 1."""
import json

import pytest

import dialog.manager
import retrieval.resources
from dialog.eval import respond_check
from tests.dialog.test_crs import dialog_ids, row, write_jsonl


@pytest.fixture
def crs_root(tmp_path):
    root = tmp_path / "crs"
    d0, d1 = dialog_ids("dev", 2)
    rd = [row(d0, 2, ["", "Hi! What do you like?", "I love Alien (1979), something scary"], ["Aliens (1986)"]),
          row(d0, 4, ["", "Hi! What do you like?", "I love Alien (1979), something scary",
                      "Have you seen Jaws (1975)?", "Yes, loved it! 🦈 more like that? \u0000"], ["Heat (1995)"]),
          row(d1, 1, ["not into horror, a comedy from the 90s"], ["Toy Story (1995)"])]
    rd += [row(d, 2, ["", "hi", "x"], ["Heat (1995)"]) for d in dialog_ids("fit", 2)]
    write_jsonl(root / "redial" / "valid_data_processed.jsonl", rd)
    write_jsonl(root / "opendialkg" / "valid_data_processed.jsonl",
                [row(10, 1, ["Do you like The Godfather?", "", "x" * 3000], ["Heat"])])
    write_jsonl(root / "opendialkg" / "train_data_processed.jsonl", [row(1, 1, ["x"], ["Up"])])
    return root


@pytest.fixture
def fake_load(resources, monkeypatch):
    monkeypatch.setattr(retrieval.resources, "load_resources", lambda *a, **k: resources)


def test_every_seeker_turn_of_each_dev_dialog_goes_through_respond(fake_load, crs_root, data_dir, tmp_path,
                                                                   monkeypatch):
    seen = []
    real = dialog.manager.DialogManager.respond

    def spy(self, state, text):
        seen.append(text)
        return real(self, state, text)
    monkeypatch.setattr(dialog.manager.DialogManager, "respond", spy)
    out = tmp_path / "reports"
    report = respond_check.main(["--crs-dir", str(crs_root), "--data-dir", str(data_dir), "--out", str(out),
                                 "--no-progress"])
    rd, od = report["sets"]["redial"], report["sets"]["opendialkg"]
    # ReDial: d0 once (its longest sample: 2 seeker turns), d1 (1); fit dialogs never
    assert (rd["dialogs"], rd["messages"], rd["errors"]) == (2, 3, 0)
    assert (od["dialogs"], od["messages"], od["errors"]) == (1, 2, 0)
    assert seen.count("I love Alien (1979), something scary") == 1 and "x" * 3000 in seen and "hi" not in seen
    assert 0 < rd["ms_per_turn"]["p50"] <= rd["ms_per_turn"]["max"]
    data = json.loads((out / "respond_check.json").read_text())
    assert data["sets"]["redial"]["messages"] == 3 and data["run"]["wall_s"] >= 0
    assert "| redial | 2 | 3 | 0 |" in (out / "respond_check.md").read_text()


def test_a_turn_that_raises_is_counted_listed_and_fails_the_command(fake_load, crs_root, data_dir, tmp_path,
                                                                    monkeypatch, capsys):
    real = dialog.manager.DialogManager.respond

    def flaky(self, state, text):
        if "Jaws" in text or "loved it" in text:
            raise KeyError("boom")
        return real(self, state, text)
    monkeypatch.setattr(dialog.manager.DialogManager, "respond", flaky)
    out = tmp_path / "reports"
    with pytest.raises(SystemExit) as e:
        respond_check.main(["--crs-dir", str(crs_root), "--data-dir", str(data_dir), "--out", str(out),
                            "--no-progress", "--crs", "redial"])
    assert e.value.code == 1
    data = json.loads((out / "respond_check.json").read_text())
    r = data["sets"]["redial"]
    assert r["errors"] == 1 and r["messages"] == 3      # the conversation goes on after the failed turn
    assert r["first_errors"][0]["error"] == "KeyError: 'boom'" and r["first_errors"][0]["turn"] == 3
    assert "KeyError" in (out / "respond_check.md").read_text() and "1 turns raised" in capsys.readouterr().err


def test_bad_options_and_missing_data_are_clear_errors(tmp_path, capsys):
    for bad in (["--crs", "movielens"], ["--limit", "0"]):
        with pytest.raises(SystemExit) as e:
            respond_check.main(bad)
        assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        respond_check.main(["--crs-dir", str(tmp_path / "none")])
    assert e.value.code == 2 and "no CRS data folder" in capsys.readouterr().err
