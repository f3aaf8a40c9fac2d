"""Everything the recommender loads at start, built once and saved under ``<out>/<dataset>/``.

``build_resources`` trains the product's CF model (SASRec) on the conversational split's training
part (``last_positive_holdout``: each user's history before their last positively rated movie, so
a conversational evaluation never meets a model that saw its target), embeds the item text,
builds the faiss indexes and writes a manifest with the sha256 of every file. ``load_resources``
checks the manifest and raises ``ArtifactError`` naming the missing or corrupt file and the
command that rebuilds it.

Layout of ``<out>/<dataset>/``:
  manifest.json          dataset, config, created, sha256 per file
  text/item_text.npy     (N, 384) MiniLM embeddings of ``catalog.items.text`` (+ .json cache meta)
  text.faiss (+ .json)   exact inner-product index over the text embeddings
  sasrec.pt              SASRec weights + config + n_items
  cf.faiss (+ .json)     exact inner-product index over SASRec item embeddings (item-to-item)
  embeddings/sasrec.*    item and user embeddings (retrieval/embeddings.py format) for the Q-Former
  conversations.npz      what people recommend in real conversations, counted on the CRS data's fit
                         parts (retrieval/comention.py); empty counts when <data-dir>/crs is missing
  people.json            directors and cast (retrieval/people.py), from the ml-100k description files
  unisrec.pt             optional (``add_unisrec``, ``training.build --unisrec``): the UniSRec-style
                         model over the item texts (retrieval/unisrec.py) on the same training part
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from retrieval.catalog import Catalog, build_catalog
from retrieval.comention import ConversationStats
from retrieval.data import load_dataset
from retrieval.embeddings import save_embeddings
from retrieval.index import ItemIndex
from retrieval.people import PeopleIndex
from retrieval.sasrec import SASRec, SASRecConfig
from retrieval.splits import Split, last_positive_holdout
from retrieval.text_encoder import TextEncoder, item_text_embeddings
from retrieval.titles import TitleIndex
from retrieval.unisrec import UniSRec, UniSRecConfig

MANIFEST_VERSION = 1
CONFIGS = {
    # The product's SASRec: smaller batches (more updates per epoch) reach a higher validation
    # NDCG@10 on ml-latest-small in 12 epochs than the benchmark default does in 30, in about a
    # third of the time (offline protocol, validation only: reports/tuning_sasrec_speed.md).
    "default": SASRecConfig(batch_size=32, epochs=12),
    "smoke": SASRecConfig(epochs=2, max_len=20, dim=16, progress=False),
}
# The optional UniSRec takes the product SASRec's training settings (not tuned on its own).
UNISREC_CONFIGS = {"default": UniSRecConfig(batch_size=32, epochs=12),
                   "smoke": UniSRecConfig(epochs=2, max_len=20, dim=16, progress=False)}


class ArtifactError(RuntimeError):
    """Artefacts are missing or corrupt; the message names the file and how to rebuild."""


@dataclass
class Resources:
    dataset: str
    catalog: Catalog
    titles: TitleIndex
    split: Split
    popularity: np.ndarray
    text_embeds: np.ndarray
    text_index: ItemIndex
    cf: SASRec
    cf_index: ItemIndex
    manifest: dict = field(default_factory=dict)
    conversations: ConversationStats | None = None
    people: PeopleIndex | None = None
    unisrec: UniSRec | None = None      # optional: the ranker's "unisrec" feature is 0 without it
    _encoder: TextEncoder | None = None
    _encoder_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(N, 384) L2-normalised query embeddings; the encoder loads once, on first use, even
        when several sessions ask at the same time."""
        with self._encoder_lock:
            if self._encoder is None:
                self._encoder = TextEncoder()
        return self._encoder(list(texts))

    def user_history(self, movielens_user_id: int) -> np.ndarray:
        """Item ids the user rated before their held-out target, in time order."""
        return self.split.train[self.split.user_index(movielens_user_id)]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _rebuild_hint(dataset: str, out: Path) -> str:
    return f"rebuild with `python -m training.build --dataset {dataset} --artifacts {out}` (or `make build`)"


def _load_data(dataset: str, data_dir):
    raw = load_dataset(dataset, data_dir)
    catalog = build_catalog(raw)
    split = last_positive_holdout(raw, catalog)
    return catalog, split, TitleIndex(catalog, split.popularity())


def build_resources(dataset: str, out_dir, config: str = "default", data_dir=None, log=print) -> Resources:
    """Train, embed, index and save everything ``load_resources`` needs."""
    if config not in CONFIGS:
        raise ValueError(f"unknown resources config {config!r}; known: {', '.join(CONFIGS)}")
    out = Path(out_dir) / dataset
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    catalog, split, titles = _load_data(dataset, data_dir)
    log(f"[build] {dataset}: {len(catalog)} movies, {split.n_users} users "
        f"({catalog.description_coverage():.0%} with a description)")

    log("[build] text embeddings (all-MiniLM-L6-v2) ...")
    text_embeds = item_text_embeddings(catalog.items["text"].tolist(), out / "text")
    text_index = ItemIndex.from_vectors(text_embeds, catalog.items)
    text_index.save(out / "text.faiss", {"what": "item text (MiniLM)"})

    log("[build] SASRec on the conversational split's train part ...")
    cf = SASRec(CONFIGS[config])
    info = cf.fit(split.train, split.n_items)
    log(f"[build] SASRec trained in {info['train_s']:.0f}s, final loss {info['loss_curve'][-1]:.3f}")
    cf.save(out / "sasrec.pt")
    cf_index = ItemIndex.from_vectors(cf.item_embeddings(), catalog.items)
    cf_index.save(out / "cf.faiss", {"what": "SASRec item embeddings"})
    save_embeddings(out / "embeddings", "sasrec", cf.item_embeddings(), cf.user_embeddings(split.train),
                    {"model": "sasrec", "config": asdict(cf.config), "dataset": dataset, "split": split.name,
                     "user_repr": "final hidden state over the history before the held-out target"})

    conversations = _conversation_stats(catalog, split, data_dir, out, log)
    people = _people_index(catalog, data_dir, out, log)
    manifest = {"version": MANIFEST_VERSION, "dataset": dataset, "config": config,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"), "build_s": round(time.perf_counter() - t0, 1)}
    _write_manifest(out, manifest)
    log(f"[build] done in {manifest['build_s']}s -> {out}")
    return Resources(dataset, catalog, titles, split, split.popularity(), text_embeds, text_index,
                     cf, cf_index, manifest, conversations, people)


def _people_index(catalog, data_dir, out: Path, log) -> PeopleIndex:
    from retrieval.data import resolve_data_dir
    people = PeopleIndex.build(catalog, resolve_data_dir(data_dir) / "movie-descriptions")
    people.save(out / "people.json")
    c = people.coverage()
    log(f"[build] people: {c['people']} ({c['directors']} directors) credited on {c['items_with_person']} "
        f"movies ({c['share_with_person']:.0%} of the catalogue)")
    return people


def _conversation_stats(catalog, split, data_dir, out: Path, log) -> ConversationStats:
    from retrieval.crs_data import fit_conversation_stats
    stats = fit_conversation_stats(catalog, split.popularity(), data_dir,
                                   on_error=lambda msg: log(f"[build] crs: {msg}"))
    stats.save(out / "conversations.npz")
    m = stats.meta
    counted = m.get("note") or f"{m['samples']} fit samples, {m['movies_recommended']} movies recommended, {m['pairs']} pairs"
    log(f"[build] conversation counts: {counted}")
    return stats


def _write_manifest(out: Path, manifest: dict) -> None:
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json")
    manifest["files"] = {str(p.relative_to(out)): _sha256(p) for p in files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))


def missing_parts(res: Resources) -> list[str]:
    """The parts newer than these artefacts (built before they existed)."""
    return [name for name in ("conversations", "people") if getattr(res, name) is None]


def add_missing_parts(res: Resources, out_dir, data_dir=None, log=print) -> Resources:
    """Artefacts built before the conversation counts or the people index existed: build those and
    add them to the manifest, leaving the rest as built."""
    out = Path(out_dir) / res.dataset
    missing = missing_parts(res)
    if "conversations" in missing:
        res.conversations = _conversation_stats(res.catalog, res.split, data_dir, out, log)
    if "people" in missing:
        res.people = _people_index(res.catalog, data_dir, out, log)
    res.manifest["added"] = {**res.manifest.get("added", {}), **{m: time.strftime("%Y-%m-%d %H:%M:%S") for m in missing}}
    _write_manifest(out, res.manifest)
    return res


def add_unisrec(res: Resources, out_dir, config: str | None = None, log=print) -> Resources:
    """Train the UniSRec-style model on the artefacts' training part (the same as SASRec's) over
    their item text embeddings, save it as ``unisrec.pt`` and add it to the manifest."""
    config = config or res.manifest.get("config", "default")
    if config not in UNISREC_CONFIGS:
        raise ValueError(f"unknown resources config {config!r}; known: {', '.join(UNISREC_CONFIGS)}")
    out = Path(out_dir) / res.dataset
    log("[build] UniSRec (item texts through a mixture-of-experts adapter) on the same train part ...")
    model = UniSRec(UNISREC_CONFIGS[config], res.text_embeds)
    info = model.fit(res.split.train, res.split.n_items)
    log(f"[build] UniSRec trained in {info['train_s']:.0f}s, final loss {info['loss_curve'][-1]:.3f}")
    model.save(out / "unisrec.pt")
    res.unisrec = model
    res.manifest["added"] = {**res.manifest.get("added", {}), "unisrec": time.strftime("%Y-%m-%d %H:%M:%S")}
    _write_manifest(out, res.manifest)
    return res


def load_resources(dataset: str, out_dir, data_dir=None) -> Resources:
    """Load what ``build_resources`` saved, after checking every file against the manifest."""
    out = Path(out_dir) / dataset
    mpath = out / "manifest.json"
    if not mpath.is_file():
        raise ArtifactError(f"no built artefacts for {dataset} in {out} (manifest.json missing); "
                            + _rebuild_hint(dataset, Path(out_dir)))
    try:
        manifest = json.loads(mpath.read_text())
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError) as e:
        raise ArtifactError(f"{mpath} is corrupt ({e}); " + _rebuild_hint(dataset, Path(out_dir))) from None
    for rel, sha in files.items():
        p = out / rel
        if not p.is_file():
            raise ArtifactError(f"artefact {p} is missing; " + _rebuild_hint(dataset, Path(out_dir)))
        if _sha256(p) != sha:
            raise ArtifactError(f"artefact {p} is corrupt (checksum mismatch); "
                                + _rebuild_hint(dataset, Path(out_dir)))
    catalog, split, titles = _load_data(dataset, data_dir)
    text_embeds = np.load(out / "text" / "item_text.npy")
    if len(text_embeds) != len(catalog):
        raise ArtifactError(f"{out / 'text'} holds {len(text_embeds)} embeddings but the catalogue has "
                            f"{len(catalog)} movies (data changed?); " + _rebuild_hint(dataset, Path(out_dir)))
    try:
        cf = SASRec.load(out / "sasrec.pt")
    except ValueError as e:
        raise ArtifactError(f"{e}; " + _rebuild_hint(dataset, Path(out_dir))) from None
    conversations = None
    if "conversations.npz" in files:
        try:
            conversations = ConversationStats.load(out / "conversations.npz")
        except (ValueError, KeyError):      # an older format: training.build counts it again
            conversations = None
        if conversations is not None and len(conversations) != len(catalog):
            raise ArtifactError(f"{out / 'conversations.npz'} counts {len(conversations)} movies but the catalogue "
                                f"has {len(catalog)}; " + _rebuild_hint(dataset, Path(out_dir)))
    people = None
    if "people.json" in files:
        try:
            people = PeopleIndex.load(out / "people.json")
        except (ValueError, KeyError, TypeError) as e:
            raise ArtifactError(f"{out / 'people.json'}: {e}; " + _rebuild_hint(dataset, Path(out_dir))) from None
    unisrec = None
    if "unisrec.pt" in files:
        try:
            unisrec = UniSRec.load(out / "unisrec.pt")
        except ValueError as e:
            raise ArtifactError(f"{e}; " + _rebuild_hint(dataset, Path(out_dir)) + " --unisrec") from None
        if unisrec.n_items != len(catalog):
            raise ArtifactError(f"{out / 'unisrec.pt'} scores {unisrec.n_items} movies but the catalogue has "
                                f"{len(catalog)}; " + _rebuild_hint(dataset, Path(out_dir)) + " --unisrec")
    return Resources(dataset, catalog, titles, split, split.popularity(), text_embeds,
                     ItemIndex.load(out / "text.faiss", catalog.items), cf,
                     ItemIndex.load(out / "cf.faiss", catalog.items), manifest, conversations, people, unisrec)
