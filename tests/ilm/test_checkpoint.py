import pytest
import torch

from ilm.checkpoint import BaseLLMMismatch, load_checkpoint, read_checkpoint_config, save_checkpoint
from ilm.config import ILMConfig
from ilm.qformer import ItemQFormer
from ilm.splice import Adapter

BASE = {"name": "tiny-random-qwen2", "sha256": "ab" * 32}


def _trained(cfg):
    torch.manual_seed(0)
    qformer, adapter = ItemQFormer(cfg.qformer), Adapter(cfg.qformer.hidden, 24, target_rms=0.3)
    with torch.no_grad():  # move every weight away from its initial value, as training would
        for p in list(qformer.parameters()) + list(adapter.parameters()):
            p.add_(torch.randn_like(p) * 0.1)
    return qformer.eval(), adapter.eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    cfg = ILMConfig.smoke(llm="tiny")
    qformer, adapter = _trained(cfg)
    save_checkpoint(tmp_path / "ckpt", cfg, qformer, adapter, BASE, extra={"step": 3})
    cfg2, qformer2, adapter2 = load_checkpoint(tmp_path / "ckpt", BASE)
    assert cfg2 == cfg
    assert read_checkpoint_config(tmp_path / "ckpt")["extra"] == {"step": 3}
    cf = torch.randn(3, cfg.qformer.d_cf)
    assert torch.equal(adapter(qformer.encode_items(cf)), adapter2(qformer2.encode_items(cf)))
    assert torch.equal(qformer.temp, qformer2.temp) and torch.equal(adapter.target_rms, adapter2.target_rms)
    text = torch.randint(0, cfg.qformer.text_vocab_size, (3, 5))
    assert torch.equal(qformer.text_logits(cf, text), qformer2.text_logits(cf, text))


@pytest.mark.parametrize("other", [{"name": "another-llm", "sha256": BASE["sha256"]},
                                   {"name": BASE["name"], "sha256": "cd" * 32}])
def test_loading_refuses_another_base_llm(tmp_path, other):
    cfg = ILMConfig.smoke()
    qformer, adapter = _trained(cfg)
    save_checkpoint(tmp_path, cfg, qformer, adapter, BASE)
    with pytest.raises(BaseLLMMismatch, match="trained on base LLM"):
        load_checkpoint(tmp_path, other)
