"""Evaluating the ILM: next-item re-ranking, item description and genre preference.

Next-item (the offline protocol: leave-one-out by time, the user's history excluded, ties against
the model): SASRec, the best single model of the offline benchmark, retrieves and ranks the whole
catalogue; the ILM re-orders its top ``n_candidates``. ``ilm_rerank`` mixes the two
(``alpha * z(retriever) + (1 - alpha) * z(ILM)`` within the candidates, alpha chosen on validation),
``ilm_rerank_only`` is the ILM's order alone. Targets outside the candidates keep their retriever
rank.

Description: text generated from an item's tokens (items whose texts stage 1 and 2 never saw),
compared with the reference by cosine of MiniLM embeddings; the same LLM given only the title is
the baseline.

Genre preference (UEM): the genres of the movies a user rated >= 4 next (validation and test items),
predicted from the training history by the LLM's first answer-token probabilities (top
``genre_top`` genres); weighted precision / recall / F1 over genres.
"""
from __future__ import annotations

import resource
import time
from collections import Counter

import numpy as np
import torch
from tqdm import tqdm

from ilm.rec import ILMRecommender
from ilm.tasks import (
    DESCRIPTION_PROMPT,
    NO_GENRE,
    Example,
    collate,
    describe,
    display,
    genre_example,
    next_item_example,
)
from retrieval.metrics import rank_metrics, target_ranks
from training.ilm_common import Prepared
from training.ilm_config import ILMRunConfig

# ---- next item ----------------------------------------------------------------------------------

def eval_users(prep: Prepared, phase: str, max_users: int, seed: int) -> np.ndarray:
    """Users with a target in ``phase``; a seeded sample of ``max_users`` when that is > 0."""
    targets = {"valid": prep.split.valid, "test": prep.split.test}[phase]
    users = np.flatnonzero(targets >= 0)
    if max_users and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    return users


def retrieve(prep: Prepared, users: np.ndarray, phase: str, k: int) -> dict:
    """SASRec's full ranking: target ranks and each user's top-k candidates with their scores."""
    split = prep.split
    histories = [split.history(int(u), phase) for u in users]
    targets = {"valid": split.valid, "test": split.test}[phase][users]
    scores = prep.sasrec.score(users, histories).astype(np.float64)
    ranks = target_ranks(scores, targets, histories)
    for b, h in enumerate(histories):
        scores[b, h] = -np.inf
    cands = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return {"users": users, "histories": histories, "targets": targets, "ranks": ranks,
            "cands": cands, "cand_scores": np.take_along_axis(scores, cands, axis=1)}


@torch.no_grad()
def ilm_scores(model: ILMRecommender, ret: dict, n_recent: int, batch_size: int,
               desc: str = "ILM scores", said: list[str] | None = None) -> np.ndarray:
    """(U, k) the ILM's score of every candidate, one LLM pass per batch of users; ``said``:
    per user, a request appended to the prompt (``tasks.next_item_example``)."""
    item_vecs = model.all_item_vectors()
    said = said or [""] * len(ret["users"])
    out = []
    for s in tqdm(range(0, len(ret["users"]), batch_size), desc=desc):
        hs = ret["histories"][s:s + batch_size]
        batch = collate([next_item_example(h, n_recent, said=t) for h, t in zip(hs, said[s:s + batch_size])],
                        model.ilm.tokenizer, model.ilm.cfg.n_query, model.user_encoder)
        out += model.score(batch, ret["cands"][s:s + batch_size], item_vecs)
    return np.stack(out)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(axis=1, keepdims=True)) / (x.std(axis=1, keepdims=True) + 1e-9)


def rerank_ranks(ret: dict, ilm: np.ndarray, alpha: float) -> np.ndarray:
    """Target ranks after re-ordering the candidates by the mixed score (ties against the model)."""
    mixed = alpha * _z(ret["cand_scores"]) + (1 - alpha) * _z(ilm)
    ranks = np.maximum(ret["ranks"], ret["cands"].shape[1])  # outside the candidates: unchanged
    for b, (cands, target) in enumerate(zip(ret["cands"], ret["targets"])):
        hit = np.flatnonzero(cands == target)
        if len(hit):
            t = hit[0]
            ranks[b] = int((mixed[b] >= mixed[b, t]).sum()) - 1
    return ranks


def _metrics(ranks: np.ndarray) -> dict:
    out = {k: round(v, 4) for k, v in rank_metrics(ranks).items()}
    out["n_users"] = int(len(ranks))
    return out


def next_item(models: dict[str, ILMRecommender], prep: Prepared, cfg: ILMRunConfig, log=print) -> dict:
    """The "models" section: sasrec and the ILM re-rankers, valid and test, on the same users."""
    ev = cfg.eval
    rets = {ph: retrieve(prep, eval_users(prep, ph, ev.max_users, cfg.seed), ph, ev.n_candidates)
            for ph in ("valid", "test")}
    report = {"sasrec": {ph: _metrics(rets[ph]["ranks"]) for ph in rets}}
    report["sasrec"]["role"] = f"retriever: its top-{ev.n_candidates} are re-ranked"
    report["sasrec"]["train_s"] = round(prep.sasrec_train_s, 1)
    for name, model in models.items():
        t = time.perf_counter()
        scores = {ph: ilm_scores(model, rets[ph], cfg.stage2.n_recent, ev.batch_size,
                                 desc=f"{name} {ph}") for ph in rets}
        score_s = time.perf_counter() - t
        grid = [{"alpha": a, "valid_ndcg@10": round(rank_metrics(rerank_ranks(rets["valid"], scores["valid"], a))["ndcg@10"], 4)}
                for a in ev.alphas]
        best = max(reversed(grid), key=lambda g: g["valid_ndcg@10"])["alpha"]  # ties: more retriever
        n_users = sum(len(r["users"]) for r in rets.values())
        for label, alpha in ((f"{name}_rerank", best), (f"{name}_rerank_only", 0.0)):
            report[label] = {ph: _metrics(rerank_ranks(rets[ph], scores[ph], alpha)) for ph in rets}
            report[label]["config"] = {"alpha_retriever": alpha, "n_candidates": ev.n_candidates}
        report[f"{name}_rerank"]["selection"] = grid
        report[f"{name}_rerank"]["score_users_per_s"] = round(n_users / score_s, 2)
        log(f"{name}: alpha {best}; valid ndcg@10 {report[f'{name}_rerank']['valid']['ndcg@10']}, "
            f"test {report[f'{name}_rerank']['test']['ndcg@10']} (sasrec test {report['sasrec']['test']['ndcg@10']})")
    return report


# ---- generation ------------------------------------------------------------------------------

@torch.no_grad()
def generate(model: ILMRecommender, examples: list[Example], max_new_tokens: int) -> tuple[list[str], dict]:
    """Greedy continuations of prompts (left-padded batch); also prompt / generated token counts."""
    batch = collate(examples, model.ilm.tokenizer, model.ilm.cfg.n_query, model.user_encoder)
    lens = batch.attention_mask.sum(dim=1)
    T = int(lens.max())
    pad = model.ilm.tokenizer.pad_token_id or 0
    ids = torch.full((len(examples), T), pad, dtype=torch.long)
    mask = torch.zeros(len(examples), T, dtype=torch.long)
    for b, n in enumerate(lens.tolist()):
        ids[b, T - n:] = batch.input_ids[b, :n]
        mask[b, T - n:] = 1
    cf = model.splice_inputs(batch)
    device = model.ilm.lm.get_input_embeddings().weight.device
    out = model.ilm.generate(ids.to(device), mask.to(device), max_new_tokens=max_new_tokens,
                             do_sample=False, **cf)
    tok = model.ilm.tokenizer
    texts = [tok.decode(row, skip_special_tokens=True).strip() for row in out]
    stop = {tok.pad_token_id, tok.eos_token_id}
    n_gen = sum(sum(1 for t in row.tolist() if t not in stop) for row in out)
    return texts, {"prompt_tokens": int(lens.sum()), "generated_tokens": n_gen}


def description_prompts(rows: list[dict], items) -> dict[str, list[Example]]:
    """The description request for each item, from its item tokens and from its title as text."""
    return {
        "item_tokens": [Example("description", DESCRIPTION_PROMPT, None, items=[int(i)]) for i in items],
        "title_only": [Example("description", f"Describe the movie {display(rows[int(i)])}.", None)
                       for i in items],
    }


def description(model: ILMRecommender, prep: Prepared, items: np.ndarray, encode, cfg: ILMRunConfig,
                batch_size: int = 10) -> dict:
    """Semantic consistency of descriptions from item tokens vs from the title alone."""
    rows = prep.item_rows()
    refs = [describe(rows[i]) for i in items]
    variants = description_prompts(rows, items)
    ref_emb = encode(refs)
    report, samples = {"n_items": int(len(items)), "reference": "title (year), genres and the catalogue "
                       "description (ilm.tasks.describe)", "metric": "mean cosine of MiniLM embeddings"}, []
    for name, exs in variants.items():
        texts, prompt_tok, gen_tok, start = [], 0, 0, time.perf_counter()
        for s in tqdm(range(0, len(exs), batch_size), desc=f"description {name}"):
            out, counts = generate(model, exs[s:s + batch_size], cfg.eval.desc_max_new_tokens)
            texts += out
            prompt_tok += counts["prompt_tokens"]
            gen_tok += counts["generated_tokens"]
        wall = time.perf_counter() - start
        cos = (encode(texts) * ref_emb).sum(axis=1)
        report[name] = {"cosine_mean": round(float(cos.mean()), 4), "cosine_std": round(float(cos.std()), 4),
                        "generate_s": round(wall, 1), "generated_tokens_per_s": round(gen_tok / wall, 2)}
        samples.append((name, texts[:3]))
    report["samples"] = [{"item": display(rows[int(i)]), "reference": refs[j],
                          **{name: texts[j] for name, texts in samples}} for j, i in enumerate(items[:3])]
    return report


# ---- genre preference ------------------------------------------------------------------------

def genre_users(prep: Prepared, n: int, seed: int) -> list[tuple[int, list[str]]]:
    """(user, genres of the validation / test items rated >= 4), a seeded sample of n users."""
    rows = prep.item_rows()
    s = prep.split
    out = []
    for u in range(s.n_users):
        items = [int(i) for i, r in ((s.valid[u], s.valid_rating[u]), (s.test[u], s.test_rating[u]))
                 if i >= 0 and r >= 4]
        genres = sorted({g for i in items for g in rows[i]["genres"] if g != NO_GENRE})
        if genres and len(s.train[u]):
            out.append((u, genres))
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(out), min(n, len(out)), replace=False))
    return [out[k] for k in keep]


def _weighted_prf(truth: list[list[str]], pred: list[list[str]], labels: list[str]) -> dict:
    from sklearn.metrics import precision_recall_fscore_support

    def onehot(sets):
        return np.array([[g in s for g in labels] for s in sets], dtype=int)

    p, r, f, _ = precision_recall_fscore_support(onehot(truth), onehot(pred), average="weighted",
                                                 zero_division=0)
    return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4)}


@torch.no_grad()
def genre_scores(model: ILMRecommender, histories: list[np.ndarray], labels: list[str],
                 user_encoder: str, titles: list[str], text_history: int = 50,
                 batch_size: int = 8) -> np.ndarray:
    """(U, n_genres) log-probability of each genre's first token as the answer's first token."""
    tok = model.ilm.tokenizer
    first = [tok(g, add_special_tokens=False)["input_ids"][0] for g in labels]
    if user_encoder not in ("text", model.user_encoder):
        raise ValueError(f"this model encodes users with {model.user_encoder!r}, not {user_encoder!r}")
    out = []
    for s in range(0, len(histories), batch_size):
        # with "text" the history is written out, so the batch has no <user> to encode
        batch = collate([genre_example(h) for h in histories[s:s + batch_size]], tok,
                        model.ilm.cfg.n_query, user_encoder, titles=titles, text_history=text_history)
        hidden = model.hidden(batch)
        last = hidden[torch.arange(hidden.shape[0]), batch.last_prompt]
        logits = model.ilm.lm.get_output_embeddings()(last).float().log_softmax(-1)
        out.append(logits[:, first].cpu().numpy())
    return np.concatenate(out)


def genre_pref(models: dict[str, ILMRecommender], prep: Prepared, cfg: ILMRunConfig, log=print) -> dict:
    """Counting baseline, history as text (5 and 50 items), Q-Former user tokens, UEM soft prompts."""
    ev = cfg.eval
    rows = prep.item_rows()
    labels = sorted({g for r in rows for g in r["genres"] if g != NO_GENRE})
    users = genre_users(prep, ev.n_genre_users, cfg.seed)
    truth = [g for _, g in users]
    histories = [prep.split.train[u] for u, _ in users]
    titles = [display(r) for r in rows]
    preds = {"counting": [[g for g, _ in Counter(g for i in h for g in rows[i]["genres"] if g != NO_GENRE)
                           .most_common(ev.genre_top)] for h in histories]}
    any_model = next(iter(models.values()))
    runs = [(f"text_{k}", any_model, "text", k) for k in ev.text_history]
    runs += [(name, m, m.user_encoder, 0) for name, m in models.items()]
    timing = {}
    for name, model, enc, k in tqdm(runs, desc="genre preference"):
        t = time.perf_counter()
        scores = genre_scores(model, histories, labels, enc, titles, text_history=k or 50)
        timing[name] = round(time.perf_counter() - t, 1)
        preds[name] = [[labels[j] for j in np.argsort(-row)[:ev.genre_top]] for row in scores]
    report = {"n_users": len(users), "genres": labels, "top": ev.genre_top,
              "protocol": "truth: genres of the user's validation and test items rated >= 4; "
                          "prediction: top genres from the training history; weighted over genres",
              "methods": {name: {**_weighted_prf(truth, p, labels), **({"score_s": timing[name]} if name in timing else {})}
                          for name, p in preds.items()}}
    log("genre preference: " + ", ".join(f"{n} F1 {m['f1']}" for n, m in report["methods"].items()))
    return report


def max_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
