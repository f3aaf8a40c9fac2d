"""The evaluation, ranker-fitting and batch commands, and the LangChain Runnable, on the fixture data."""
import json
import subprocess
import sys

import numpy as np
import pytest

import retrieval.resources
from dialog import batch
from dialog.eval import evaluate, fit_ranker
from dialog.eval.evaluate import bootstrap_ci, conversation_metrics
from dialog.eval.simulator import Conversation
from dialog.manager import build_manager
from dialog.ranker import RankerWeights
from dialog.runnable import RecommenderRunnable


@pytest.fixture
def fake_load(resources, monkeypatch):
    monkeypatch.setattr(retrieval.resources, "load_resources", lambda *a, **k: resources)


def test_metrics_on_hand_made_conversations():
    convs = [Conversation(1, 7, success_turn=1, final_list=[7, 1, 2]),
             Conversation(2, 7, success_turn=4, final_list=[1, 2, 3, 4, 7]),
             Conversation(3, 7, success_turn=None, final_list=[1] * 9 + [7])]
    m = conversation_metrics(convs, max_turns=5)
    assert m["success@1"].tolist() == [1, 0, 0] and m["success@5"].tolist() == [1, 1, 0]
    assert m["recall@1"].tolist() == [1, 0, 0] and m["recall@5"].tolist() == [1, 1, 0]
    assert m["recall@10"].tolist() == [1, 1, 1]
    assert m["ndcg@10"] == pytest.approx([1.0, 1 / np.log2(6), 1 / np.log2(11)])
    assert m["avg_turns"].tolist() == [1, 4, 6]
    lo, hi = bootstrap_ci(np.array([0.0, 1.0] * 50))
    assert lo < 0.5 < hi


def test_evaluate_help():
    out = subprocess.run([sys.executable, "-m", "dialog.eval.evaluate", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--n-users" in out.stdout and "success" in out.stdout


def test_evaluate_writes_json_md_png(fake_load, tmp_path):
    report = evaluate.main(["--n-users", "4", "--max-turns", "3", "--out", str(tmp_path), "--no-progress",
                            "--systems", "popularity,text,full"])
    data = json.loads((tmp_path / "sim_ml-latest-small.json").read_text())
    assert data == json.loads(json.dumps(report))
    assert set(data["systems"]) == {"popularity", "text", "full"}
    for key in ("dataset", "simulator", "n_users", "max_turns", "seed"):
        assert key in data
    s = data["systems"]["full"]
    for key in ("success@1", "success@3", "success@5", "recall@10", "ndcg@10", "avg_turns", "leaks",
                "latency_p50_s", "latency_p95_s"):
        assert key in s
    assert s["ci95"]["success@5"][0] <= s["success@5"] <= s["ci95"]["success@5"][1]
    assert (tmp_path / "sim_ml-latest-small.md").read_text().startswith("# Simulated conversations")
    assert (tmp_path / "sim_ml-latest-small.png").stat().st_size > 1000
    assert data["run"]["hardware"]["cpu_count"] and data["run"]["wall_s"] >= 0  # 0.0: under 50 ms


def test_evaluate_terse_simulator_writes_its_own_report(fake_load, tmp_path):
    report = evaluate.main(["--n-users", "3", "--max-turns", "2", "--out", str(tmp_path), "--no-progress",
                            "--systems", "popularity,full", "--simulator", "terse"])
    data = json.loads((tmp_path / "sim_terse_ml-latest-small.json").read_text())
    assert data["simulator"] == "terse" and data == json.loads(json.dumps(report))
    assert not (tmp_path / "sim_ml-latest-small.json").exists()
    assert (tmp_path / "sim_terse_ml-latest-small.png").is_file()


def test_fit_ranker_never_uses_test_users(fake_load, resources, tmp_path, monkeypatch):
    seen_users = []
    real = fit_ranker.simulate

    def spy(manager, sim, people, *a, **k):
        seen_users.extend(p.user_index for p in people)
        return real(manager, sim, people, *a, **k)

    monkeypatch.setattr(fit_ranker, "simulate", spy)
    out = tmp_path / "w.json"
    fit_ranker.main(["--n-test", "4", "--n-fit", "5", "--n-val", "2", "--rounds", "1", "--weights-out", str(out),
                     "--no-progress", "--no-crs"])
    from dialog.eval.simulator import sample_users
    assert not set(seen_users) & set(sample_users(resources.split, 4, 0))
    w = RankerWeights.load(out)
    assert w.meta["fitted"] and w.meta["n_fit_users"] == 5


def test_batch_command(fake_load, tmp_path):
    conv = [{"id": "a", "turns": [{"role": "user", "text": "I loved The Matrix, something similar"},
                                  {"role": "assistant", "text": "Try Inception (2010) or Alien (1979)."},
                                  {"role": "user", "text": "seen the first one, no horror"}]},
            {"id": "b", "turns": [{"role": "user", "text": "a comedy"}]}]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(c) for c in conv) + "\nnot json\n" + json.dumps({"id": "c", "turns": "x"}) + "\n")
    stats = batch.main(["--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--k", "3", "--no-progress"])
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", 2, "c"] and stats["errors"] == 2
    a = rows[0]["items"]
    assert len(a) == 3 and set(a[0]) == {"item_id", "movielens_id", "title", "year"}
    ids = {x["item_id"] for x in a}
    assert not ids & {2, 19, 3}         # liked, seen (Inception) and shown (Alien) never come back
    assert all(x["item_id"] not in (3, 4, 13, 16) for x in a)   # no horror
    assert "error" in rows[2] and rows[2]["items"] == []


def test_runnable_invoke_stream_batch(resources):
    r = RecommenderRunnable(build_manager(resources, weights=RankerWeights.prior()))
    out = r.invoke("a crime movie")
    assert out["action"] == "recommend" and out["suggestions"]
    nxt = r.invoke({"text": "no drama", "state": out["state"]})
    assert not {s["item_id"] for s in nxt["suggestions"]} & {s["item_id"] for s in out["suggestions"]}
    parts = list(r.stream({"text": "a comedy"}))
    assert "chunk" in parts[0] and parts[-1]["reply"] == "".join(p["chunk"] for p in parts[:-1])
    assert len(r.batch(["a comedy", "a war movie"])) == 2
    with pytest.raises(TypeError):
        r.invoke(42)


def test_runnable_stream_passes_a_withdrawn_draft_on(resources):
    from dialog.reply import RETRACT
    manager = build_manager(resources, weights=RankerWeights.prior())
    real = manager.stream

    def stream(state, text):
        yield "Try Casablanca! "
        yield RETRACT
        yield from real(state, text)

    manager.stream = stream
    parts = list(RecommenderRunnable(manager).stream("a comedy"))
    assert parts[0] == {"chunk": "Try Casablanca! "} and parts[1] == {"retract": True}
    assert "Casablanca" not in parts[-1]["reply"]


@pytest.mark.parametrize("folds, counts", [([], "as built (each fit sample's own labels included)"),
                                           (["--crs-folds", "5"], "out of fold (5 folds of fit dialogs)")])
def test_fit_ranker_learns_from_real_fit_conversations_and_never_reads_dev(fake_load, resources, tmp_path, monkeypatch,
                                                                          folds, counts):
    from tests.dialog.test_crs import dialog_ids, row, write_jsonl
    crs = tmp_path / "data" / "crs"
    fit, dev = dialog_ids("fit", 6), dialog_ids("dev", 3)
    write_jsonl(crs / "redial" / "valid_data_processed.jsonl",
                [row(d, 2, ["", "hi", "I loved Alien (1979), something like it?"], ["Aliens (1986)"],
                     entity=["Alien (1979)"]) for d in fit]
                + [row(d, 2, ["", "hi", "I loved Heat (1995)"], ["Fargo (1996)"], entity=["Heat (1995)"]) for d in dev])
    write_jsonl(crs / "opendialkg" / "train_data_processed.jsonl", [row(1, 1, ["I like Jaws"], ["Alien"], entity=["Jaws"])])
    write_jsonl(crs / "opendialkg" / "valid_data_processed.jsonl", [row(2, 1, ["I like Up"], ["Shrek"], entity=["Up"])])
    monkeypatch.setenv("ILMREC_DATA_DIR", str(tmp_path / "data"))
    replayed = []
    real = fit_ranker.crs_groups
    monkeypatch.setattr(fit_ranker, "crs_groups", lambda m, c, samples, p, oof: (replayed.extend(samples), real(m, c, samples, p, oof))[1])
    out = tmp_path / "w.json"
    fit_ranker.main(["--n-test", "4", "--n-fit", "4", "--n-val", "2", "--rounds", "1", "--weights-out", str(out),
                     "--no-progress", "--crs-dev", "5", *folds])
    assert {s.sample.dialog_id for s in replayed} == set(fit) | {"1"}          # fit parts only
    meta = RankerWeights.load(out).meta
    assert meta["real_conversations"]["fit_samples"] == 7 and meta["real_conversations"]["fit_groups"] >= 1
    assert meta["real_conversations"]["conversation_counts"] == counts
    assert meta["real_conversations"]["dev_samples_per_set"] == {"redial": 3, "opendialkg": 1}
    assert set(meta["dev_recall@10"]) == {"redial", "opendialkg"}
