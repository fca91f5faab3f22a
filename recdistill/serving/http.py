"""`recdistill serve`: a served model behind a small HTTP API (FastAPI + uvicorn, the `serve` extra).

    GET  /recommend?user=RAW_ID&k=10[&include_seen=true]    a known user's top-k list
    POST /recommend  {"history": ["RAW_ID", ...], "k": 10, "include_seen": false}
                                                            a new user given their history, oldest first
    GET  /health                                            model, role, kind, items, users, versions

Answers are `Recommendations.to_dict()`, exactly what `Recommender.recommend` returns. The model is
opened once, before the server starts listening; every request reuses it. Bad input is a 4xx whose
`detail` names the problem, never a 500:

    400  the body is not JSON (or empty)
    404  unknown user (the answer also lists it under `unknown`: {"kind": "user", "ids": [...]})
    422  k outside 1..n_items or not a whole number, a body that is not {"history": [...], ...},
         an empty history, unknown items (listed under `unknown`), a query parameter of the wrong type
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from recdistill.errors import ConfigError, DependencyError
from recdistill.serving.catalog import UnknownIdError
from recdistill.serving.manifest import read_manifest
from recdistill.serving.recommend import Recommender
from recdistill.serving.recommend import check_k as check_list_length
from recdistill.serving.scorers import TorchScorer
from recdistill.utils import runinfo

try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
except ImportError as missing:
    raise DependencyError(f"`recdistill serve` needs fastapi and uvicorn ({missing.name} is missing): "
                          "pip install 'recdistill[serve]'") from None

log = logging.getLogger(__name__)

#: List length when a request gives none.
DEFAULT_K = 10
#: Keys of a POST /recommend body.
BODY_KEYS = ("history", "k", "include_seen")
_BODY = '{"history": ["RAW_ID", ...], "k": 10, "include_seen": false}'
#: Packages whose versions /health reports, besides runinfo's.
_SERVING_PACKAGES = ("fastapi", "uvicorn", "onnxruntime")


class BadRequest(Exception):
    """A request the service refuses: HTTP `status` with `detail` naming the problem."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.extra = status, detail, extra


def model_name(recommender: Recommender) -> str:
    """The model's config name (sasrec, bpr_mf...): from the checkpoint or the export's manifest."""
    if isinstance(recommender.scorer, TorchScorer):
        return str(recommender.scorer.model.config.name)
    return str(read_manifest(Path(recommender.source["path"]))["model"]["name"])


def serving_versions() -> dict[str, str]:
    """Versions of what answers the requests: runinfo's packages, fastapi, uvicorn, onnxruntime."""
    return runinfo.package_versions(_SERVING_PACKAGES)


def health_of(recommender: Recommender) -> dict[str, Any]:
    """The /health answer: what is served, from where, and with which versions."""
    catalog = recommender.catalog
    return {"status": "ok", "model": model_name(recommender), "role": recommender.role, "kind": recommender.kind,
            "source": recommender.source.get("source"), "path": recommender.source.get("path"),
            "items": catalog.n_items, "users": catalog.n_users, "max_length": recommender.max_length,
            "k": {"default": DEFAULT_K, "max": catalog.n_items}, "versions": serving_versions()}


def check_k(k: Any, n_items: int) -> int:
    """k as an int within 1..n_items; BadRequest 422 naming the value and the range otherwise."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise BadRequest(422, f"k must be a whole number in 1..{n_items}, got {json.dumps(k)}")
    try:
        return check_list_length(k, n_items)
    except ConfigError as error:
        raise BadRequest(422, str(error)) from None


def parse_history_body(body: bytes, n_items: int) -> tuple[list[str], int, bool]:
    """(history, k, include_seen) of a POST /recommend body; BadRequest naming what is wrong.
    Raw ids are strings; JSON integers are read as their decimal text (1 is "1")."""
    if not body.strip():
        raise BadRequest(400, f"the request body is empty; send a JSON object {_BODY}")
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadRequest(400, f"the request body is not valid JSON ({error}); send a JSON object {_BODY}") from None
    except RecursionError:  # the decoder recurses per nesting level
        raise BadRequest(400, f"the request body nests too deeply to be read; send a JSON object {_BODY}") from None
    if not isinstance(payload, dict):
        raise BadRequest(422, f"the request body is a JSON {type(payload).__name__}, not an object; send {_BODY}")
    unknown = sorted(set(payload) - set(BODY_KEYS))
    if unknown:
        raise BadRequest(422, f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in the "
                              f"request body; valid: {', '.join(BODY_KEYS)} (a known user: GET /recommend?user=RAW_ID)")
    if "history" not in payload:
        raise BadRequest(422, f"the request body has no \"history\": the new user's raw item ids, oldest first; "
                              f"send {_BODY}")
    history = payload["history"]
    if not isinstance(history, list):
        raise BadRequest(422, f"\"history\" must be a list of raw item ids, got {json.dumps(history)[:80]}")
    if not history:
        raise BadRequest(422, "the history is empty; give at least one item id")
    wrong = [(i, h) for i, h in enumerate(history) if isinstance(h, bool) or not isinstance(h, (str, int))]
    if wrong:
        position, value = wrong[0]
        more = f"; {len(wrong) - 1} more entries are not ids either" if len(wrong) > 1 else ""
        raise BadRequest(422, f"history[{position}] is {json.dumps(value)}: raw item ids are strings (or whole "
                              f"numbers){more}")
    include_seen = payload.get("include_seen", False)
    if not isinstance(include_seen, bool):
        raise BadRequest(422, f"\"include_seen\" must be true or false, got {json.dumps(include_seen)}")
    return [str(h) for h in history], check_k(payload.get("k", DEFAULT_K), n_items), include_seen


def _error(status: int, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status)


def _validation_detail(error: RequestValidationError) -> str:
    """One line per invalid query parameter: its name, what is wrong, the value given."""
    parts = []
    for item in error.errors():
        name = ".".join(str(part) for part in item.get("loc", ())[1:]) or "request"
        given = f" (got {item['input']!r})" if item.get("input") is not None else ""
        parts.append(f"query parameter {name}: {item.get('msg', 'invalid')}{given}")
    return "; ".join(parts)


def create_app(recommender: Recommender) -> FastAPI:
    """The FastAPI app serving `recommender` (opened already; see the module docstring)."""
    catalog = recommender.catalog
    health = health_of(recommender)
    app = FastAPI(title="recdistill", description=f"top-k recommendations of {health['model']} "
                                                  f"({recommender.role}, {health['source']})")

    @app.exception_handler(BadRequest)
    def bad_request(request: Request, error: BadRequest) -> JSONResponse:
        return _error(error.status, error.detail, **error.extra)

    @app.exception_handler(UnknownIdError)
    def unknown_ids(request: Request, error: UnknownIdError) -> JSONResponse:
        return _error(404 if error.kind == "user" else 422, str(error), unknown={"kind": error.kind, "ids": error.ids})

    @app.exception_handler(ConfigError)
    def refused(request: Request, error: ConfigError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_detail(error))

    @app.get("/health")
    def get_health() -> dict[str, Any]:
        """What is served: model, role, kind, items, users, versions."""
        return health

    @app.get("/recommend")
    def recommend_user(user: str | None = None, k: int = DEFAULT_K, include_seen: bool = False) -> dict[str, Any]:
        """The top-k list of a known user (raw id), seen items excluded unless include_seen=true."""
        if user is None:
            raise BadRequest(422, "GET /recommend needs ?user=RAW_ID (a known user); for a new user, POST "
                                  f"/recommend with a JSON body {_BODY}")
        return recommender.recommend(user, k=check_k(k, catalog.n_items), exclude_seen=not include_seen).to_dict()

    @app.post("/recommend")
    async def recommend_history(request: Request) -> dict[str, Any]:
        """The top-k list of a new user given their history (raw item ids, oldest first); the body is
        read as JSON whatever its content type."""
        history, k, include_seen = parse_history_body(await request.body(), catalog.n_items)
        found = await run_in_threadpool(recommender.recommend, history=history, k=k, exclude_seen=not include_seen)
        return found.to_dict()

    return app


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8000, role: str | None = None,
          cache_dir: str | Path | None = None, threads: int | None = None) -> None:
    """Open the model at `path` (an export folder or a run folder) once, then answer HTTP requests on
    host:port until stopped (Ctrl-C). `threads`: onnxruntime intra-op threads and torch's thread count."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads} must be >= 1")
        torch.set_num_threads(threads)
    recommender = Recommender.open(path, role, cache_dir, threads)
    app = create_app(recommender)
    log.info("serving %s (%s, %s) from %s on http://%s:%d", recommender.role, model_name(recommender),
             recommender.source.get("source"), recommender.source.get("path"), host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")
