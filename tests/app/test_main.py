"""The command line entry: clear messages for missing or corrupt artefacts, and --print-recs."""
from __future__ import annotations

import shutil

from app.main import main


def test_missing_artefacts_say_how_to_rebuild(tmp_path, capsys):
    assert main(["--artifacts", str(tmp_path / "none"), "--dataset", "ml-100k"]) == 2
    err = capsys.readouterr().err
    assert "manifest.json missing" in err and "training.build --dataset ml-100k" in err
    assert "Traceback" not in err


def test_corrupt_artefact_is_named(real_manager, tmp_path, capsys):
    _, _, root = real_manager
    art = tmp_path / "artifacts"
    shutil.copytree(root / "artifacts", art)
    ckpt = art / "ml-latest-small" / "sasrec.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])                       # a truncated checkpoint
    assert main(["--artifacts", str(art), "--data-dir", str(root)]) == 2
    err = capsys.readouterr().err
    assert "sasrec.pt is corrupt" in err and "training.build" in err


def test_print_recs(real_manager, capsys):
    _, _, root = real_manager
    assert main(["--artifacts", str(root / "artifacts"), "--data-dir", str(root), "--no-llm", "--print-recs", "a comedy"]) == 0
    out = capsys.readouterr().out
    assert "1. " in out and "score" in out


def test_an_llm_that_cannot_load_leaves_the_chat_usable(real_manager, tmp_path, capsys):
    _, _, root = real_manager
    missing = tmp_path / "missing.gguf"
    assert main(["--artifacts", str(root / "artifacts"), "--data-dir", str(root), "--llm", str(missing),
                 "--llm-backend", "llamacpp", "--print-recs", "a comedy"]) == 0
    captured = capsys.readouterr()
    assert "could not be loaded" in captured.err and "missing.gguf" in captured.err
    assert "1. " in captured.out and "llm: none" in captured.out and "make llm-weights" in captured.out
