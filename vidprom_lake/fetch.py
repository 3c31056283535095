"""Fetch: from nothing to a lake, downloading only the files asked for from the Hugging Face Hub.

``fetch(lake, "vidprom", videos=["ms"], shards="1-3")`` lists the dataset's real files on the
Hub (sizes, LFS sha256), picks the ones asked for, checks free disk, then downloads them one
after another in a background thread while the main thread imports each finished file into
the lake (prompts CSV first, then embeddings and video shards), so a shard is imported while
the next one downloads.

* Downloads go through ``huggingface_hub`` (``HF_ENDPOINT``, ``HF_TOKEN``, ``HF_HUB_OFFLINE``
  and files already in the Hub cache are honoured) into a persistent ``<file>.incomplete``
  that a later run resumes with an HTTP Range request (huggingface_hub 2.4's own
  ``hf_hub_download`` writes a process-unique temporary file and deletes it on failure, so it
  cannot resume across runs; its ``http_get`` does the transfer, with its in-call retries).
* Every file is checked against the size the Hub lists and its hash (the LFS sha256, or the
  git blob sha1 of small non-LFS files) while it is written; a mismatch removes the file and
  imports nothing.
* Each landed file gets a ``fetch`` batch in the lake's log (source ``hf://datasets/<repo>/
  <path>``, its sha256, the batch that imported it); a re-run skips those files without
  downloading them, and the imports themselves are idempotent.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, MissingDependency, VidlakeError

if TYPE_CHECKING:
    from .lake import Lake


class FetchError(VidlakeError):
    """A fetch could not go on (gated dataset, hash mismatch, missing file, offline, disk)."""


# ---------------------------------------------------------------------- the datasets
@dataclass(frozen=True)
class DatasetSpec:
    name: str
    repo: str
    license: str
    #: regexes (over repo paths) of the metadata files fetched by default, with their ingest format
    metadata: tuple[tuple[str, str], ...]
    description: str = ""


VIDPROM_MODELS = {"pika": "pika", "vc2": "vc2", "videocrafter2": "vc2", "t2vz": "t2vz",
                  "text2video-zero": "t2vz", "ms": "ms", "modelscope": "ms", "cog": "cog",
                  "cogvideox": "cog", "opensora": "opensora", "open-sora": "opensora",
                  "st2v": "st2v"}

DATASETS: dict[str, DatasetSpec] = {
    "vidprom": DatasetSpec(
        "vidprom", "WenhaoWang/VidProM", "cc-by-nc-4.0",
        ((r"VidProM_unique\.csv", "vidprom"),),
        "VidProM: VidProM_unique.csv, VidProM_embed.hdf5, {model}_videos/{model}_videos_{N}.tar"),
    "openvid": DatasetSpec(
        "openvid", "nkp37/OpenVid-1M", "cc-by-4.0",
        ((r"(?:.*/)?OpenVid-1M\.csv", "openvid"),),
        "OpenVid-1M captions (OpenVid-1M.csv; --files OpenVidHD.csv for the HD subset)"),
    "vidgen": DatasetSpec(
        "vidgen", "Fudan-FUXI/VIDGEN-1M", "apache-2.0",
        ((r"(?:.*/)?VidGen_1M_video_caption\.json", "vidgen"),),
        "VidGen-1M captions (VidGen_1M_video_caption.json)"),
    "miradata": DatasetSpec(
        "miradata", "TencentARC/MiraData", "gpl-3.0",
        ((r"(?:.*/)?miradata_v1_330k\.csv", "miradata"),),
        "MiraData captions (miradata_v1_330k.csv; --files 'miradata_v1_9k.csv' for a subset)"),
}

VIDEO_SHARD_RE = re.compile(r"^(?P<model>[a-z0-9]+)_videos/(?P=model)_videos_(?P<n>\d+)\.tar$")
EXAMPLE_SHARD_RE = re.compile(r"^example/(?P<model>[a-z0-9]+)_videos_example\.tar$")
#: Files on disk at once (one importing, one downloading) when downloads are not kept.
SLOTS = 2


@dataclass
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # LFS files: the Hub's sha256 of the content
    git_oid: str | None  # git blob sha1 (the only hash of small non-LFS files)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RemoteFile:
        return cls(d["path"], int(d["size"]), d.get("sha256"), d.get("git_oid"))


@dataclass
class PlanItem:
    path: str
    size: int
    kind: str  # prompts | embeddings | videos | metadata
    format: str | None = None  # ingest format
    model: str | None = None  # video model
    sha256: str | None = None
    git_oid: str | None = None
    status: str = "download"  # download | resume | local | in-lake
    local: str | None = None  # an existing local copy (download dir or Hub cache)
    landed_in: str | None = None  # fetch batch that recorded it

    def remote(self) -> RemoteFile:
        return RemoteFile(self.path, self.size, self.sha256, self.git_oid)


@dataclass
class FetchPlan:
    dataset: str
    repo: str
    revision: str
    commit: str
    download_dir: str
    items: list[PlanItem]
    keep_downloads: bool
    gated: Any = False
    license: str | None = None
    offline: bool = False
    disk: list[dict[str, Any]] = field(default_factory=list)

    @property
    def to_download(self) -> int:
        return sum(i.size - _partial_size(self, i) for i in self.items
                   if i.status in ("download", "resume"))

    def rows(self, compact: bool = False) -> list[dict[str, Any]]:
        if compact:
            return [{"path": i.path, "kind": i.kind, "size": human(i.size), "status": i.status,
                     "sha256": (i.sha256 or "")[:12] or None} for i in self.items]
        return [{"path": i.path, "kind": i.kind, "model": i.model, "size": i.size,
                 "size_h": human(i.size), "status": i.status,
                 "sha256": (i.sha256 or "")[:12] or None} for i in self.items]

    def disk_ok(self) -> bool:
        return all(d["free"] >= d["needed"] for d in self.disk)

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "repo": self.repo, "commit": self.commit,
                "download_dir": self.download_dir, "keep_downloads": self.keep_downloads,
                "gated": self.gated, "license": self.license, "offline": self.offline,
                "to_download": self.to_download, "disk": self.disk,
                "items": [asdict(i) for i in self.items]}


@dataclass
class Landed:
    path: str
    kind: str
    status: str  # imported | skipped (already in lake)
    batch_id: str | None = None  # the ingest / import batch
    fetch_batch: str | None = None
    rows_added: int = 0  # prompts rows or videos added
    rows_updated: int = 0  # prompts rows that got embeddings
    already_in_lake: int = 0
    rejected: int = 0
    bytes_downloaded: int = 0
    seconds_download: float = 0.0
    seconds_import: float = 0.0


@dataclass
class FetchReport:
    plan: FetchPlan
    landed: list[Landed] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self, compact: bool = False) -> list[dict[str, Any]]:
        if compact:  # a terminal-wide table
            return [{"path": x.path, "status": x.status, "batch": x.batch_id or x.fetch_batch,
                     "added": x.rows_added, "updated": x.rows_updated,
                     "downloaded": human(x.bytes_downloaded),
                     "dl/import s": f"{x.seconds_download:.1f}/{x.seconds_import:.1f}"}
                    for x in self.landed]
        return [{"path": x.path, "kind": x.kind, "status": x.status, "batch_id": x.batch_id,
                 "rows_added": x.rows_added, "rows_updated": x.rows_updated,
                 "already_in_lake": x.already_in_lake,
                 "rejected": x.rejected, "downloaded": human(x.bytes_downloaded),
                 "download_s": round(x.seconds_download, 2),
                 "import_s": round(x.seconds_import, 2)} for x in self.landed]


class Progress:
    """What fetch reports while it works; the CLI draws rich bars from it. All no-ops here."""

    def start(self, path: str, total: int, done: int) -> None: ...
    def advance(self, path: str, n: int) -> None: ...
    def finish(self, path: str) -> None: ...
    def note(self, text: str) -> None: ...


# ---------------------------------------------------------------------- helpers
def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub() -> Any:
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
        import huggingface_hub.hf_api
        import huggingface_hub.utils  # noqa: F401 (submodules are lazy attributes otherwise)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise MissingDependency("huggingface_hub", "fetch", "vidlake fetch") from exc
    return huggingface_hub


def endpoint() -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it once, at import)."""
    hub = _hub()
    return (os.environ.get("HF_ENDPOINT") or hub.constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    hub = _hub()
    return _env_true("HF_HUB_OFFLINE") or bool(hub.constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str:
    """The Hub cache as the environment says now (HF_HUB_CACHE, else HF_HOME/hub)."""
    hub = _hub()
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    return str(hub.constants.HF_HUB_CACHE)


def default_download_dir() -> str:
    return os.environ.get("VIDLAKE_DOWNLOADS") or os.path.join(
        os.path.expanduser("~"), ".cache", "vidlake", "downloads")


def parse_shards(spec: str | Iterable[int] | None) -> list[int] | None:
    """``"1-3"``, ``"1,4,7-9"``, ``"all"`` (None) -> sorted shard numbers."""
    if spec is None:
        return None
    if not isinstance(spec, str):
        return sorted(set(int(s) for s in spec))
    spec = spec.strip().lower()
    if spec in ("", "all"):
        return None
    out: set[int] = set()
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise InputError(f"--shards {spec!r}: expected numbers and ranges like 1-3,7 or all")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if b < a:
            raise InputError(f"--shards {spec!r}: range {a}-{b} runs backwards")
        out.update(range(a, b + 1))
    return sorted(out)


def _gated_message(repo: str, ep: str, detail: str = "") -> str:
    token = "HF_TOKEN is set" if os.environ.get("HF_TOKEN") else "HF_TOKEN is not set"
    msg = (f"dataset {repo} is gated: accept its licence/conditions at {ep}/datasets/{repo} "
           f"with your Hugging Face account, then set HF_TOKEN to a token of that account "
           f"({token})")
    return msg + (f". The Hub said: {detail.strip().splitlines()[-1]}" if detail.strip() else "")


@contextlib.contextmanager
def _hub_errors(repo: str, what: str) -> Any:
    """Turn huggingface_hub errors into one-line FetchErrors that say what to do."""
    hub = _hub()
    errs = hub.errors
    try:
        yield
    except errs.GatedRepoError as exc:
        raise FetchError(_gated_message(repo, endpoint(), str(exc))) from None
    except getattr(errs, "RemoteEntryNotFoundError", errs.EntryNotFoundError):
        raise FetchError(f"{what}: the Hub has no such file in {repo} (404)") from None
    except errs.RevisionNotFoundError:
        raise FetchError(f"{what}: no such revision of {repo}") from None
    except errs.RepositoryNotFoundError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        hint = (" (401: if it is private or gated, set HF_TOKEN to a token with access)"
                if status == 401 else "")
        raise FetchError(f"{what}: dataset {repo} not found on {endpoint()}{hint}") from None
    except errs.OfflineModeIsEnabled:
        raise FetchError(f"{what}: HF_HUB_OFFLINE is set, and this needs the Hub") from None
    except errs.HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status == 403:
            raise FetchError(_gated_message(repo, endpoint(), str(exc))) from None
        raise FetchError(f"{what}: the Hub answered {status}: "
                         f"{str(exc).strip().splitlines()[0]}") from None


# ---------------------------------------------------------------------- listing
def _repo_dir(download_dir: str, repo: str) -> Path:
    return Path(download_dir) / repo.replace("/", "--")


def list_files(repo: str, *, revision: str = "main", download_dir: str | None = None,
               token: str | None = None) -> tuple[str, list[RemoteFile], dict[str, Any]]:
    """(commit, files, info) of a dataset repo as the Hub lists it now.

    Online, the listing is saved beside the downloads, so an offline run (HF_HUB_OFFLINE=1)
    can plan and import files already downloaded.
    """
    hub = _hub()
    ddir = _repo_dir(download_dir or default_download_dir(), repo)
    saved = ddir / ".vidlake-listing.json"
    if offline():
        if not saved.exists():
            raise FetchError(
                f"HF_HUB_OFFLINE is set and there is no earlier listing of {repo} in {ddir}; "
                "run once with network access (or unset HF_HUB_OFFLINE)")
        data = json.loads(saved.read_text())
        return data["commit"], [RemoteFile.from_json(f) for f in data["files"]], data["info"]
    api = hub.HfApi(endpoint=endpoint(), token=token)
    with _hub_errors(repo, "listing"):
        info = api.dataset_info(repo, revision=revision)
        gated = getattr(info, "gated", False)
        if gated:
            api.auth_check(repo, repo_type="dataset")
        commit = info.sha or revision
        files = []
        for f in api.list_repo_tree(repo, repo_type="dataset", revision=commit, recursive=True):
            if not isinstance(f, hub.hf_api.RepoFile):
                continue
            files.append(RemoteFile(f.path, int(f.size), f.lfs.sha256 if f.lfs else None,
                                    f.blob_id))
    from .video.importer import hostile

    unsafe = [(f.path, why) for f in files if (why := hostile(f.path))]
    if unsafe:  # a download lands at <download dir>/<repo>/<path>: never outside it
        raise FetchError(f"the listing of {repo} from {endpoint()} names {len(unsafe)} unsafe "
                         f"path(s), e.g. {unsafe[0][0]!r} ({unsafe[0][1]}); nothing was "
                         "downloaded (is HF_ENDPOINT a Hub you trust?)")
    card = getattr(info, "card_data", None)
    meta = {"gated": gated, "license": (card.get("license") if card else None)}
    ddir.mkdir(parents=True, exist_ok=True)
    tmp = saved.with_suffix(".tmp")
    tmp.write_text(json.dumps({"repo": repo, "commit": commit, "info": meta,
                               "files": [asdict(f) for f in files]}))
    os.replace(tmp, saved)
    return commit, files, meta


# ---------------------------------------------------------------------- planning
def _landed_index(lake: Lake | None) -> tuple[dict[str, str], dict[str, str]]:
    """(sha256 -> batch, hf uri+oid -> batch) of files the lake's log says have landed."""
    by_sha: dict[str, str] = {}
    by_uri: dict[str, str] = {}
    if lake is None:
        return by_sha, by_uri
    for b in lake.log():
        if b.status != "committed":
            continue
        if b.kind in ("ingest", "attach-embeddings") and b.source_sha256:
            by_sha.setdefault(b.source_sha256, b.batch_id)  # the same file, ingested by hand
        if b.kind == "fetch":
            if b.source_sha256:
                by_sha[b.source_sha256] = b.batch_id
            if b.source:
                by_uri[f"{b.source}#{b.params.get('git_oid')}"] = b.batch_id
    return by_sha, by_uri


def _uri(repo: str, path: str) -> str:
    return f"hf://datasets/{repo}/{path}"


def plan(dataset: str, lake: Lake | None = None, *, embeddings: bool = False,
         videos: Iterable[str] | str | None = None, shards: str | Iterable[int] | None = None,
         example: bool = False, metadata_only: bool = False, files: Iterable[str] = (),
         repo: str | None = None, revision: str = "main", download_dir: str | None = None,
         keep_downloads: bool = False, token: str | None = None) -> FetchPlan:
    """What a fetch would download and import, from the Hub's current listing; no download."""
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    repo = repo or spec.repo
    ddir = download_dir or default_download_dir()
    commit, listing, info = list_files(repo, revision=revision, download_dir=ddir, token=token)
    by_path = {f.path: f for f in listing}
    items: list[PlanItem] = []

    def add(f: RemoteFile, kind: str, fmt: str | None, model: str | None = None) -> None:
        if any(i.path == f.path for i in items):
            return
        items.append(PlanItem(f.path, f.size, kind, fmt, model, f.sha256, f.git_oid))

    def need(path: str, why: str) -> RemoteFile:
        if path not in by_path:
            raise FetchError(f"{path} is not in {repo} at {commit[:12]} ({why})")
        return by_path[path]

    files = list(files)
    models = _models(videos)
    if dataset == "vidprom":
        if metadata_only and (models or embeddings):
            raise InputError("--metadata-only fetches the prompts only; drop --videos/--embeddings")
        prefix = "example/" if example else ""
        csv_name = f"{prefix}VidProM_unique{'_example' if example else ''}.csv"
        add(need(csv_name, "the prompts"), "prompts", "vidprom")
        if embeddings or example:
            h5 = f"{prefix}VidProM_embed{'_example' if example else ''}.hdf5"
            add(need(h5, "the embeddings"), "embeddings", "vidprom-embed")
        if models:
            wanted = parse_shards(shards)
            avail: dict[str, dict[int, RemoteFile]] = {}
            for f in listing:
                m = (EXAMPLE_SHARD_RE if example else VIDEO_SHARD_RE).match(f.path)
                if m:
                    n = 0 if example else int(m.group("n"))
                    avail.setdefault(m.group("model"), {})[n] = f
            if models == ["all"]:
                models = sorted(avail)
            for model in models:
                have = avail.get(model)
                if not have:
                    raise FetchError(
                        f"no {'example ' if example else ''}video shards of model {model!r} in "
                        f"{repo}; it has: {', '.join(sorted(avail)) or 'none'}")
                if example:
                    add(have[0], "videos", None, model)
                    continue
                nums = wanted if wanted is not None else sorted(have)
                missing = [n for n in nums if n not in have]
                if missing:
                    raise FetchError(
                        f"shard(s) {', '.join(f'{model}_videos/{model}_videos_{n}.tar' for n in missing)}"
                        f" not in {repo} at {commit[:12]}; {model} has shards {_ranges(sorted(have))}")
                for n in nums:
                    add(have[n], "videos", None, model)
        elif shards is not None:
            raise InputError("--shards needs --videos MODEL")
    else:
        if models or embeddings or example or shards is not None:
            raise InputError(f"{dataset}: only metadata can be fetched (--metadata-only); "
                             "import its videos with `vidlake import-videos --source`")
        if not files:
            for pattern, fmt in spec.metadata:
                hits = [f for f in listing if re.fullmatch(pattern, f.path)]
                if not hits:
                    raise FetchError(f"{repo} at {commit[:12]} has no file matching {pattern!r}")
                add(hits[0], "metadata", fmt)
    for pattern in files:
        meta_fmt = spec.metadata[0][1] if dataset != "vidprom" else None
        hits = [f for f in listing if f.path == pattern or Path(f.path).match(pattern)]
        if not hits:
            raise FetchError(f"no file of {repo} matches {pattern!r}")
        for f in hits:
            kind = ("embeddings" if f.path.endswith((".h5", ".hdf5")) else
                    "videos" if f.path.endswith(".tar") else "prompts" if dataset == "vidprom"
                    else "metadata")
            add(f, kind, meta_fmt if kind == "metadata" else
                ("vidprom" if kind == "prompts" else
                 "vidprom-embed" if kind == "embeddings" else None),
                _shard_model(f.path) if kind == "videos" else None)
    # prompts before anything that attaches to them
    order = {"prompts": 0, "metadata": 0, "embeddings": 1, "videos": 2}
    items.sort(key=lambda i: order[i.kind])

    fp = FetchPlan(dataset, repo, revision, commit, str(ddir), items, keep_downloads,
                   gated=info.get("gated", False), license=info.get("license") or spec.license,
                   offline=offline())
    by_sha, by_uri = _landed_index(lake)
    hub = _hub()
    for it in items:
        landed = (by_sha.get(it.sha256) if it.sha256 else None) or by_uri.get(
            f"{_uri(repo, it.path)}#{it.git_oid}")
        if landed:
            it.status, it.landed_in = "in-lake", landed
            continue
        final = _repo_dir(ddir, repo) / it.path
        cached = hub.try_to_load_from_cache(repo, it.path, repo_type="dataset", revision=commit,
                                            cache_dir=hub_cache_dir())
        if final.exists() and final.stat().st_size == it.size:
            it.status, it.local = "local", str(final)
        elif isinstance(cached, str) and os.path.getsize(cached) == it.size:
            it.status, it.local = "local", cached
        elif Path(str(final) + ".incomplete").exists():
            it.status = "resume"
    fp.disk = _disk_needs(fp, lake)
    return fp


def _models(videos: Iterable[str] | str | None) -> list[str]:
    if videos is None:
        return []
    vs = [videos] if isinstance(videos, str) else list(videos)
    out: list[str] = []
    for v in vs:
        for m in str(v).split(","):
            m = m.strip().lower()
            if not m:
                continue
            if m == "all":
                return ["all"]
            if m not in VIDPROM_MODELS:
                raise InputError(f"unknown VidProM model {m!r}; known: pika, vc2 (videocrafter2), "
                                 "t2vz (text2video-zero), ms (modelscope), all; in example/ also "
                                 "cog, opensora, st2v")
            out.append(VIDPROM_MODELS[m])
    return sorted(set(out), key=out.index)


def _shard_model(path: str) -> str | None:
    m = VIDEO_SHARD_RE.match(path) or EXAMPLE_SHARD_RE.match(path)
    return m.group("model") if m else None


def _ranges(nums: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3,7'."""
    out: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(f"{nums[i]}" if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(out)


def _partial_size(fp: FetchPlan, it: PlanItem) -> int:
    if it.status != "resume":
        return 0
    p = Path(str(_repo_dir(fp.download_dir, fp.repo) / it.path) + ".incomplete")
    return p.stat().st_size if p.exists() else 0


def _device_root(path: str) -> str:
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return str(p)


def _disk_needs(fp: FetchPlan, lake: Lake | None) -> list[dict[str, Any]]:
    """Free disk vs needed, per file system: downloads (all of them when kept, else the two
    largest at once) plus the lake's growth (about the size of what it imports)."""
    todo = [i for i in fp.items if i.status in ("download", "resume", "local")]
    fetch_sizes = sorted((i.size - _partial_size(fp, i) for i in todo
                          if i.status != "local"), reverse=True)
    dl_need = sum(fetch_sizes) if fp.keep_downloads else sum(fetch_sizes[:SLOTS])
    lake_need = sum(i.size for i in todo)
    places = [("downloads", _device_root(fp.download_dir), dl_need)]
    if lake is not None and "://" not in lake.uri:
        places.append(("lake", _device_root(lake.uri), lake_need))
    out: dict[int, dict[str, Any]] = {}
    for what, root, needed in places:
        dev = os.stat(root).st_dev
        entry = out.setdefault(dev, {"where": root, "for": [], "needed": 0,
                                     "free": shutil.disk_usage(root).free})
        entry["for"].append(what)
        entry["needed"] += needed
    for e in out.values():
        e["for"] = "+".join(e["for"])
    return list(out.values())


# ---------------------------------------------------------------------- downloading
class _HashingFile:
    """The file object handed to huggingface_hub's http_get: hashes what is written and
    reports progress; a truncation (server ignored the Range) re-hashes what is left."""

    def __init__(self, fh: Any, path: Path, hashers: list[Any], on_bytes: Callable[[int], None],
                 stop: threading.Event | None):
        self.fh, self.path, self.hashers, self.on_bytes, self.stop = fh, path, hashers, on_bytes, stop

    def write(self, data: bytes) -> int:
        if self.stop is not None and self.stop.is_set():
            raise FetchError("stopped")
        for h in self.hashers:
            h.update(data)
        n = self.fh.write(data)
        self.on_bytes(len(data))
        return n

    def tell(self) -> int:
        return self.fh.tell()

    def seek(self, *a: Any) -> int:
        return self.fh.seek(*a)

    def truncate(self, size: int | None = None) -> int:
        n = self.fh.truncate(size)
        self.fh.flush()
        self.hashers[:] = _prefix_hashers(self.path, self.fh.tell(), self._git_size)
        return n

    _git_size: int | None = None

    def flush(self) -> None:
        self.fh.flush()


def _prefix_hashers(path: Path, n: int, git_size: int | None) -> list[Any]:
    """Hashers primed with the first n bytes of path (what an earlier run downloaded)."""
    hs = [hashlib.sha256()]
    if git_size is not None:
        g = hashlib.sha1()
        g.update(f"blob {git_size}\0".encode())
        hs.append(g)
    if n:
        with open(path, "rb") as fh:
            left = n
            while left:
                buf = fh.read(min(1 << 22, left))
                if not buf:
                    break
                for h in hs:
                    h.update(buf)
                left -= len(buf)
    return hs


def file_hashes(path: str | Path, size: int) -> tuple[str, str]:
    """(sha256, git blob sha1) of a local file."""
    hs = _prefix_hashers(Path(path), size, size)
    return hs[0].hexdigest(), hs[1].hexdigest()


def _verify(rf: RemoteFile, path: Path, sha256: str, git_sha1: str | None) -> None:
    size = path.stat().st_size
    if size != rf.size:
        raise FetchError(f"{rf.path}: downloaded {size:,} bytes, the Hub lists {rf.size:,}")
    if rf.sha256 and sha256 != rf.sha256:
        raise FetchError(f"{rf.path}: sha256 mismatch (the Hub lists {rf.sha256}, the download "
                         f"hashes to {sha256}); the file was removed and nothing was imported; "
                         "run again to download it afresh")
    if not rf.sha256 and rf.git_oid and git_sha1 is not None and git_sha1 != rf.git_oid:
        raise FetchError(f"{rf.path}: git blob hash mismatch (the Hub lists {rf.git_oid}, the "
                         f"download hashes to {git_sha1}); the file was removed and nothing was "
                         "imported; run again to download it afresh")


def download(repo: str, commit: str, rf: RemoteFile, dest: Path, *, token: str | None = None,
             progress: Progress | None = None, stop: threading.Event | None = None) -> tuple[int, str]:
    """Download one file to `dest` (resuming `dest.incomplete`), verified; (bytes fetched, sha256)."""
    hub = _hub()
    from huggingface_hub.file_download import get_hf_file_metadata, hf_hub_url, http_get
    from huggingface_hub.utils import build_hf_headers

    prog = progress or Progress()
    part = Path(str(dest) + ".incomplete")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if offline():
        raise FetchError(f"{rf.path} is not downloaded yet and HF_HUB_OFFLINE is set")
    ep = endpoint()
    url = hf_hub_url(repo, rf.path, repo_type="dataset", revision=commit, endpoint=ep)
    with _hub_errors(repo, rf.path):
        meta = get_hf_file_metadata(url, token=token, endpoint=ep)
    headers = build_hf_headers(token=token)
    target = meta.location or url
    if target != url and _host(target) != _host(url):
        headers.pop("authorization", None)  # a signed CDN URL: never send the token there
    have = part.stat().st_size if part.exists() else 0
    if have > rf.size:
        part.unlink()
        have = 0
    git_size = None if rf.sha256 else rf.size
    hashers = _prefix_hashers(part, have, git_size)
    prog.start(rf.path, rf.size, have)
    fetched = 0

    def on_bytes(n: int) -> None:
        nonlocal fetched
        fetched += n
        prog.advance(rf.path, n)

    class _Quiet(hub.utils.tqdm):  # type: ignore[name-defined]
        def __init__(self, *a: Any, **k: Any) -> None:
            k["disable"] = True
            super().__init__(*a, **k)

    try:
        with open(part, "ab") as fh:
            hf = _HashingFile(fh, part, hashers, on_bytes, stop)
            hf._git_size = git_size
            with _hub_errors(repo, rf.path):
                http_get(target, hf, resume_size=have,  # type: ignore[arg-type]
                         headers=headers, expected_size=rf.size, displayed_filename=rf.path,
                         tqdm_class=_Quiet)
    except OSError as exc:
        if "Consistency check failed" in str(exc):
            raise FetchError(f"{rf.path}: {str(exc).splitlines()[0]}; run again to resume") from None
        raise
    finally:
        prog.finish(rf.path)
    sha = hashers[0].hexdigest()
    git = hashers[1].hexdigest() if len(hashers) > 1 else None
    try:
        _verify(rf, part, sha, git)
    except FetchError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return fetched, sha


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


# ---------------------------------------------------------------------- fetch
def fetch(lake: Lake, dataset: str, *, progress: Progress | None = None,
          check_disk: bool = True, token: str | None = None, verify: str = "first-frame",
          thumbnails: bool = True, **options: Any) -> FetchReport:
    """Download what `plan(...)` lists and import it into `lake` as it lands.

    Options are those of `plan` (embeddings, videos, shards, example, metadata_only, files,
    repo, revision, download_dir, keep_downloads). Downloads run in a background thread, one
    file at a time, while the main thread imports the previous file. `verify` and
    `thumbnails` are passed to `import_videos` for video shards.
    """
    t0 = time.perf_counter()
    prog = progress or Progress()
    fp = plan(dataset, lake, token=token, **options)
    report = FetchReport(fp)
    if check_disk and not fp.disk_ok():
        short = [d for d in fp.disk if d["free"] < d["needed"]]
        raise FetchError("not enough free disk: " + "; ".join(
            f"{d['where']} ({d['for']}) has {human(d['free'])} free, needs {human(d['needed'])}"
            for d in short) + " (see --plan; --download-dir elsewhere, or --keep-downloads off)")
    if fp.offline:
        absent = [i.path for i in fp.items if i.status in ("download", "resume")]
        if absent:
            raise FetchError(f"{', '.join(absent)} is not downloaded yet and HF_HUB_OFFLINE is "
                             f"set; nothing was imported (files present: see --plan)")
    if fp.gated and not fp.offline:
        prog.note(f"{fp.repo} is gated; access checked")
    todo = [i for i in fp.items if i.status != "in-lake"]
    for it in fp.items:
        if it.status == "in-lake":
            report.landed.append(Landed(it.path, it.kind, "skipped", fetch_batch=it.landed_in))
            prog.note(f"{it.path}: already in the lake ({it.landed_in})")
    if not todo:
        report.seconds = time.perf_counter() - t0
        return report

    rdir = _repo_dir(fp.download_dir, fp.repo)
    slots = threading.Semaphore(len(todo) if fp.keep_downloads else SLOTS)
    ready: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()

    def downloader() -> None:
        for it in todo:
            slots.acquire()
            if stop.is_set():
                return
            try:
                t = time.perf_counter()
                if it.local:  # already on disk; ours (in the download folder) is deleted after import
                    ready.put((it, Path(it.local), 0, 0.0, Path(it.local).is_relative_to(rdir)))
                    continue
                dest = rdir / it.path
                n, _ = download(fp.repo, fp.commit, it.remote(), dest, token=token,
                                progress=prog, stop=stop)
                ready.put((it, dest, n, time.perf_counter() - t, True))
            except BaseException as exc:  # handed to the importing thread
                ready.put(exc)
                return

    th = threading.Thread(target=downloader, name="vidlake-fetch", daemon=True)
    th.start()
    try:
        for _ in todo:
            got = ready.get()
            if isinstance(got, BaseException):
                raise got
            it, path, nbytes, dl_s, owned = got
            if it.local:  # an existing local copy: verify it before importing
                _verify_local(it, path)
            t = time.perf_counter()
            prog.note(f"importing {it.path} ...")
            landed = _import(lake, fp, it, path, verify=verify, thumbnails=thumbnails)
            landed.bytes_downloaded, landed.seconds_download = nbytes, dl_s
            landed.seconds_import = time.perf_counter() - t
            prog.note(f"{it.path}: {landed.rows_added:,} added, {landed.rows_updated:,} updated, "
                      f"{landed.already_in_lake:,} already in the lake, {landed.rejected:,} "
                      f"rejected ({landed.batch_id}, {landed.seconds_import:.1f} s)")
            report.landed.append(landed)
            if owned and not fp.keep_downloads:
                path.unlink(missing_ok=True)
            slots.release()
    except BaseException:
        stop.set()
        slots.release()
        raise
    finally:
        th.join(timeout=30)
    report.seconds = time.perf_counter() - t0
    return report


def _verify_local(it: PlanItem, path: Path) -> None:
    sha, git = file_hashes(path, path.stat().st_size)
    _verify(it.remote(), path, sha, git)


def _import(lake: Lake, fp: FetchPlan, it: PlanItem, path: Path, *, verify: str = "first-frame",
            thumbnails: bool = True) -> Landed:
    landed = Landed(it.path, it.kind, "imported")
    if it.kind == "videos":
        from .video import import_videos

        rep = import_videos(lake, [str(path)], model=it.model, verify=verify,
                            thumbnails=thumbnails)
        landed.batch_id, landed.rows_added = rep.batch_id, rep.imported
        landed.already_in_lake, landed.rejected = rep.already_in_lake, len(rep.rejected)
        counts: dict[str, Any] = {"rows_added": 0, "videos_imported": rep.imported,
                                  "already_in_lake": rep.already_in_lake,
                                  "rejected": len(rep.rejected)}
    else:
        rep = lake.ingest(str(path), format=it.format)
        landed.batch_id, landed.rows_added = rep.batch_id, rep.rows_added
        landed.rows_updated = rep.rows_updated
        landed.already_in_lake = rep.already_in_lake
        landed.rejected = rep.skipped_total
        counts = {"rows_added": 0, "ingest_rows_added": rep.rows_added,
                  "rows_updated": 0, "ingest_rows_updated": rep.rows_updated}
    sha = it.sha256 or file_hashes(path, it.size)[0]
    with lake.batch("fetch", source=_uri(fp.repo, it.path), source_sha256=sha,
                    params={"dataset": fp.dataset, "repo": fp.repo, "revision": fp.commit,
                            "path": it.path, "size": it.size, "git_oid": it.git_oid,
                            "import_batch": landed.batch_id, "kind": it.kind,
                            "model": it.model}) as b:
        b.counts.update(counts)
        landed.fetch_batch = b.batch_id
    return landed
