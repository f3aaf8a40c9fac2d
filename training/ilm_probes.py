"""Probes of what an ILM's item tokens carry, read through the LLM itself.

From the item tokens alone (``<item>`` in the prompt, nothing else about the movie):
  genre_f1     the genres in the LLM's answer to the facts question (``ilm.tasks.FACTS_PROMPT``),
               weighted F1 over genres (support-weighted, as sklearn's "weighted")
  decade_acc   the decade in that answer, accuracy
  title10_acc  the right title among 10 (the true one and 9 random catalogue titles): the
               candidate the LLM finds likeliest (mean token log-probability) as the start of the
               description answer (``ilm.tasks.DESCRIPTION_PROMPT``)
The comparison ``title_text`` is the same LLM given the title as text instead (no year in it, so
the decade is not handed over; its title10 is a copy task, an upper bound, not a rival).

Items are the stage-1 held-out items (their texts were never trained on in stage 1 or 2), so the
probes measure what the tokens carry for items the ILM has not been taught, from their CF
embedding alone; ``seen`` items (described in stage 2) are reported beside them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ilm.rec import ILMRecommender
from ilm.tasks import DESCRIPTION_PROMPT, FACTS_PROMPT, NO_GENRE, Example, collate, decade_of
from training.ilm_eval import _weighted_prf, generate

TEXT_FACTS_PROMPT = ("What are the genres and the decade of the movie {title}? "
                     "Answer as: Genres: <genres>. Decade: <decade>.")
TEXT_DESCRIPTION_PROMPT = "Describe the movie {title}."


def parse_facts(text: str, labels: list[str]) -> tuple[list[str], str | None]:
    """The known genre names and the first decade ("1990s") in an answer."""
    low = text.lower()
    genres = [g for g in labels if re.search(r"\b" + re.escape(g.lower()) + r"\b", low)]
    m = re.search(r"\b(1[89]\d0|20[0-2]0)s\b", low)
    return genres, (m.group(1) + "s") if m else None


def probe_items(rows: list[dict], candidates: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded sample of ``candidates`` that have genres and a year."""
    ok = [int(i) for i in candidates
          if decade_of(rows[int(i)].get("year")) and any(g != NO_GENRE for g in rows[int(i)]["genres"])]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(ok, size=min(n, len(ok)), replace=False)) if ok else np.zeros(0, np.int64)


def _prompt(kind: str, variant: str, rows: list[dict], item: int) -> tuple[str, list[int]]:
    """(prompt, item ids of its ``<item>`` mentions) of one probe question about ``item``."""
    if variant == "title_text":
        template = TEXT_FACTS_PROMPT if kind == "facts" else TEXT_DESCRIPTION_PROMPT
        return template.format(title=rows[item]["title"]), []
    return (FACTS_PROMPT if kind == "facts" else DESCRIPTION_PROMPT), [item]


@torch.no_grad()
def choice_logprob(model: ILMRecommender, prompt: Example, choices: list[str]) -> np.ndarray:
    """Mean log-probability per token of each choice as the answer to one prompt: the prompt runs
    once and its cache is shared by the choices (the same numbers as scoring each full row, without
    re-reading the prompt for every choice; the test checks both agree)."""
    tok = model.ilm.tokenizer
    batch = collate([prompt], tok, model.ilm.cfg.n_query, model.user_encoder)
    device = model.ilm.lm.get_input_embeddings().weight.device
    decoder, head = model.ilm.lm.get_decoder(), model.ilm.lm.get_output_embeddings()
    out = decoder(inputs_embeds=model.ilm.embed(batch.input_ids.to(device), **model.splice_inputs(batch)),
                  use_cache=True)
    ids = [tok(c, add_special_tokens=False)["input_ids"][:32] or [tok.eos_token_id] for c in choices]
    L, C, P = max(len(r) for r in ids), len(ids), batch.input_ids.shape[1]
    cand = torch.full((C, L), tok.eos_token_id, dtype=torch.long)
    mask = torch.zeros(C, L, dtype=torch.long)
    for b, r in enumerate(ids):
        cand[b, :len(r)], mask[b, :len(r)] = torch.tensor(r), 1
    cache = out.past_key_values
    cache.batch_repeat_interleave(C)
    nxt = decoder(input_ids=cand.to(device), past_key_values=cache,
                  attention_mask=torch.cat([torch.ones(C, P, dtype=torch.long), mask], 1).to(device)).last_hidden_state
    states = torch.cat([out.last_hidden_state[:, -1:].expand(C, 1, -1), nxt[:, :-1]], dim=1)  # predict token t
    lp = head(states).float().log_softmax(-1).gather(2, cand.to(device)[..., None])[..., 0]
    return ((lp * mask.to(device)).sum(1) / mask.to(device).sum(1)).cpu().numpy()


def item_probes(model: ILMRecommender, rows: list[dict], items: np.ndarray, variant: str,
                labels: list[str], seed: int = 0, batch_size: int = 16, n_choices: int = 10,
                max_new_tokens: int = 24) -> dict:
    """genre_f1, decade_acc and title10_acc of one variant ("title_text" or item tokens)."""
    truth_g = [[g for g in rows[i]["genres"] if g != NO_GENRE] for i in items]
    truth_d = [decade_of(rows[i]["year"]) for i in items]
    answers = []
    for s in tqdm(range(0, len(items), batch_size), desc=f"probe facts ({variant})"):
        exs = []
        for i in items[s:s + batch_size]:
            prompt, ids = _prompt("facts", variant, rows, int(i))
            exs.append(Example("facts", prompt, None, items=ids))
        answers += generate(model, exs, max_new_tokens)[0]
    parsed = [parse_facts(a, labels) for a in answers]
    rng = np.random.default_rng(seed)
    n_items = len(rows)
    hits = []
    for i in tqdm(items, desc=f"probe title10 ({variant})"):
        others = rng.choice(np.delete(np.arange(n_items), int(i)), size=n_choices - 1, replace=False)
        cands = [int(i), *map(int, others)]
        prompt, ids = _prompt("description", variant, rows, int(i))
        scores = choice_logprob(model, Example("description", prompt, None, items=ids),
                                [rows[c]["title"] for c in cands])
        hits.append(int(np.argmax(scores) == 0))
    return {"n_items": int(len(items)),
            "genre_f1": _weighted_prf(truth_g, [p[0] for p in parsed], labels)["f1"],
            "decade_acc": round(float(np.mean([p[1] == d for p, d in zip(parsed, truth_d)])), 4),
            "title10_acc": round(float(np.mean(hits)), 4),
            "chance": {"title10_acc": round(1 / n_choices, 4)},
            "samples": [{"item": rows[int(i)]["title"], "answer": a} for i, a in zip(items[:3], answers[:3])]}


def update_probes(out_dir: Path, dataset: str, section: str, value: dict) -> Path:
    """Set one section of ``<out_dir>/ilm_probes_<dataset>.json`` (keeping the others) and rewrite
    its Markdown twin from the whole file."""
    path = Path(out_dir) / f"ilm_probes_{dataset}.json"
    data = json.loads(path.read_text()) if path.is_file() else {"dataset": dataset}
    data[section] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    path.with_suffix(".md").write_text(probes_markdown(data))
    return path


def probes_markdown(d: dict) -> str:
    lines = [f"# What the ILM's tokens carry: probes on {d['dataset']}", "",
             "Written by `python -m training.ilm_stage1` (section stage1) and `python -m "
             "training.ilm_run` (the others); each section's own report names its command, date, "
             "hardware and load: `ilm_stage1_<dataset>.md`, `ilm_<dataset>.md`.", ""]
    if "stage1" in d:
        s = d["stage1"]
        lines += ["## Stage 1: held-out item->text Recall@10", "",
                  f"{s['heldout_items']} held-out items; CF input `{s['cf_input']}`; chance "
                  f"{s['chance_recall@10']} overall, {s.get('chance_recall@10_min5')} among items with "
                  ">= 5 ratings.", "", "| model | overall | >= 5 ratings |", "|---|---|---|"]
        for name in ("ridge", "random_qformer", "qformer"):
            if name in s:
                lines.append(f"| {name} ({s['cf_input']}) | {s[name]['recall@10']} | {s[name]['recall@10_min5']} |")
        for cf, c in s.get("by_cf_input", {}).items():
            if cf != s["cf_input"]:
                lines += [f"| ridge ({cf}) | {c['ridge']['recall@10']} | {c['ridge']['recall@10_min5']} |",
                          f"| qformer ({cf}) | {c['qformer']['recall@10']} | {c['qformer']['recall@10_min5']} |"]
        if s.get("best_cf_input"):
            lines += ["", f"`qformer ({s['cf_input']})` is the `{s['ablation']}` ablation (chosen on "
                      "validation); the other CF inputs' rows train the item_text ablation. Best CF "
                      f"input on validation: `{s['best_cf_input']}`."]
        lines.append("")
    for key, title in (("item_tokens", "Item tokens alone, held-out items"),
                       ("item_tokens_seen", "Item tokens alone, items stage 2 described")):
        if key in d:
            lines += [f"## {title}", "", "| variant | genre weighted F1 | decade accuracy | title among 10 |",
                      "|---|---|---|---|"]
            lines += [f"| {v} | {r['genre_f1']} | {r['decade_acc']} | "
                      f"{'-' if r['title10_acc'] is None else r['title10_acc']} |" for v, r in d[key].items()]
            lines.append("")
    if "user_tokens" in d:
        lines += ["## User tokens: genres of the next liked movies (weighted F1)", "",
                  "| variant | genre F1 |", "|---|---|"]
        lines += [f"| {v} | {r['genre_f1']} |" for v, r in d["user_tokens"].items()]
        lines.append("")
    if "run" in d:
        r = d["run"]
        lines += [f"Item and user sections: `{r['command']}` on {r['date']}, config `{r['config']}`, "
                  f"LLM {r['llm']}, wall time {r['wall_s']} s.", ""]
    return "\n".join(lines)
