"""`recdistill serve`: the HTTP API in-process with FastAPI's test client (every refused input is a 4xx
naming the problem) and once over the loopback address with uvicorn. The served models are small,
untrained SASRec and BPR-MF models on a hand-made catalog: building them takes milliseconds, and the
lists they give are compared with `Recommender.recommend` itself (ONNX vs checkpoint: tests/test_serving.py)."""

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, httpx) is in dev")
pytest.importorskip("httpx", reason="FastAPI's test client needs httpx (in the serve extra)")
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from recdistill.cli import main  # noqa: E402
from recdistill.models.ranking_base import RankingShape  # noqa: E402
from recdistill.models.registry import build_model  # noqa: E402
from recdistill.serving import http  # noqa: E402
from recdistill.serving.catalog import Catalog  # noqa: E402
from recdistill.serving.manifest import write_manifest  # noqa: E402
from recdistill.serving.recommend import Recommender  # noqa: E402
from recdistill.serving.scorers import TorchScorer  # noqa: E402

N_USERS, N_ITEMS, MAX_LENGTH = 12, 40, 8
# Raw ids as MovieLens writes them, plus look-alikes that are different ids: "005" is not "5", "007" not "7".
USER_IDS = ["005", "5", *(str(u) for u in range(10, 10 + N_USERS - 2))]
ITEM_IDS = [*(str(i) for i in range(1, N_ITEMS)), "007"]
MODELS = {"sasrec": {"dim": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.0}, "bpr_mf": {"dim": 8}}
HISTORY = ["3", "1", "4", "15", "9"]  # a new user with a 5-item history


def catalog() -> Catalog:
    """Each user saw 6 items in time order (train 4, valid 1, test 1), with titles."""
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(N_USERS), 6)
    item = np.concatenate([rng.choice(N_ITEMS, 6, replace=False) for _ in range(N_USERS)])
    frame = pd.DataFrame({"user": user, "item": item, "timestamp": np.tile(np.arange(6), N_USERS)})
    position = frame.groupby("user").cumcount()
    items = pd.DataFrame({"title": [f"Film {i}" for i in ITEM_IDS]})
    return Catalog.from_split(np.array(USER_IDS), np.array(ITEM_IDS), items,
                              [frame[position < 4], frame[position == 4], frame[position == 5]], tie_seed=0)


def recommender(name: str) -> Recommender:
    """An untrained, seeded `name` model served from PyTorch (what `Recommender.open(RUN_DIR)` builds)."""
    torch.manual_seed(0)
    model = build_model({"name": name, **MODELS[name]}, RankingShape(N_USERS, N_ITEMS, MAX_LENGTH))
    return Recommender(TorchScorer(model), catalog(), "student_kd", MAX_LENGTH,
                       source={"path": "/runs/example", "source": "checkpoint"})


@pytest.fixture(scope="module", params=list(MODELS))
def served(request):
    """(recommender, test client) of each model kind: sequence (SASRec) and dot product (BPR-MF)."""
    torch.set_num_threads(1)
    found = recommender(request.param)
    with TestClient(http.create_app(found)) as client:  # a server error would raise here, not become a 500
        yield found, client


@pytest.fixture(scope="module")
def client():
    with TestClient(http.create_app(recommender("sasrec"))) as test_client:
        yield test_client


def test_health_names_the_model_role_size_and_versions(served):
    found, client = served
    answer = client.get("/health")
    assert answer.status_code == 200
    health = answer.json()
    assert health["status"] == "ok" and health["role"] == "student_kd" and health["source"] == "checkpoint"
    assert health["model"] == found.scorer.model.config.name and health["kind"] == found.kind
    assert (health["items"], health["users"], health["max_length"]) == (N_ITEMS, N_USERS, MAX_LENGTH)
    assert health["k"] == {"default": 10, "max": N_ITEMS}
    assert {"python", "recdistill", "torch", "fastapi", "uvicorn", "onnxruntime"} <= set(health["versions"])


def test_a_known_user_gets_the_list_recommend_gives(served):
    found, client = served
    answer = client.get("/recommend", params={"user": "005", "k": 5})
    assert answer.status_code == 200
    assert answer.json() == found.recommend(user="005", k=5).to_dict()
    assert answer.json()["user"] == "005" and len(answer.json()["recommendations"]) == 5
    assert client.get("/recommend", params={"user": "5"}).json() == found.recommend(user="5").to_dict()  # k=10
    seen = client.get("/recommend", params={"user": "005", "k": N_ITEMS, "include_seen": "true"}).json()
    assert seen == found.recommend(user="005", k=N_ITEMS, exclude_seen=False).to_dict()
    assert len(seen["recommendations"]) == N_ITEMS


def test_a_new_user_with_a_five_item_history_gets_the_list_recommend_gives(served):
    found, client = served
    answer = client.post("/recommend", json={"history": HISTORY, "k": 10})
    assert answer.status_code == 200
    expected = found.recommend(history=HISTORY, k=10)
    assert answer.json() == expected.to_dict() and len(expected.items) == 10
    listed = {r["item"] for r in answer.json()["recommendations"]}
    assert answer.json()["history"] == HISTORY and not set(HISTORY) & listed  # seen items excluded
    # a body without content type, whole numbers read as their text (7 is "7", never "007"), k defaulted
    as_numbers = client.post("/recommend", content=json.dumps({"history": [3, 1, 4, 15, 7]}))
    assert as_numbers.json() == found.recommend(history=["3", "1", "4", "15", "7"]).to_dict()
    listed = {r["item"] for r in as_numbers.json()["recommendations"]}
    assert as_numbers.json()["history"][-1] == "7" and "7" not in listed
    everything = client.post("/recommend", json={"history": HISTORY, "k": N_ITEMS, "include_seen": True}).json()
    assert everything == found.recommend(history=HISTORY, k=N_ITEMS, exclude_seen=False).to_dict()


def test_the_batch_path_ranks_every_user_in_one_scorer_call_as_recommend_does(served, monkeypatch):
    found, _ = served
    calls = []
    score = found.known_user_scores
    monkeypatch.setattr(found, "known_user_scores", lambda users: calls.append(len(users)) or score(users))
    items, scores = found.rank_users(np.arange(N_USERS), k=5)  # (U, 5) each
    assert calls == [N_USERS] and items.shape == scores.shape == (N_USERS, 5)
    for user in range(N_USERS):
        expected = found.recommend(user=USER_IDS[user], k=5)
        assert [ITEM_IDS[i] for i in items[user]] == expected.items
        assert scores[user].tolist() == pytest.approx(expected.scores, abs=1e-5)  # batched float rounding


_BAD_GETS = [  # (query, status, words the detail must contain)
    ({"user": "nobody"}, 404, "unknown user 'nobody'"),
    ({"user": "05"}, 404, "unknown user '05'"),  # raw ids match exactly as text: "05" is neither "005" nor "5"
    ({}, 422, "needs ?user=RAW_ID"),
    ({"user": "005", "k": 0}, 422, f"k=0 is out of range: give 1..{N_ITEMS}"),
    ({"user": "005", "k": -3}, 422, f"k=-3 is out of range: give 1..{N_ITEMS}"),
    ({"user": "005", "k": N_ITEMS + 1}, 422, f"k={N_ITEMS + 1} is out of range"),
    ({"user": "005", "k": "ten"}, 422, "query parameter k: Input should be a valid integer"),
    ({"user": "005", "k": "2.5"}, 422, "(got '2.5')"),
    ({"user": "005", "include_seen": "maybe"}, 422, "query parameter include_seen"),
]


@pytest.mark.parametrize(("query", "status", "words"), _BAD_GETS, ids=[w for _, _, w in _BAD_GETS])
def test_bad_queries_are_4xx_naming_the_problem(client, query, status, words):
    answer = client.get("/recommend", params=query)
    assert answer.status_code == status and words in answer.json()["detail"], answer.json()


_BAD_BODIES = [  # (raw body, status, words the detail must contain)
    (b"{bad", 400, "not valid JSON (Expecting property name"),
    (b"", 400, "the request body is empty"),
    (b"\xff\xfe", 400, "not valid JSON"),
    (b"[1, 2]", 422, "is a JSON list, not an object"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nests too deeply"),  # the decoder's recursion, not a 500
    (b'{"items": ["1"]}', 422, "unknown key 'items' in the request body; valid: history, k, include_seen"),
    (b'{"user": "005"}', 422, "GET /recommend?user=RAW_ID"),
    (b'{"k": 3}', 422, 'no "history"'),
    (b'{"history": "1,2"}', 422, '"history" must be a list of raw item ids, got "1,2"'),
    (b'{"history": []}', 422, "the history is empty"),
    (b'{"history": ["1", 2.5, null]}', 422, "history[1] is 2.5: raw item ids are strings"),
    (b'{"history": ["1", true]}', 422, "history[1] is true"),
    (b'{"history": ["1", "x", "y"]}', 422, "unknown items 'x', 'y'"),
    (b'{"history": ["1"], "k": "3"}', 422, f'k must be a whole number in 1..{N_ITEMS}, got "3"'),
    (b'{"history": ["1"], "k": true}', 422, "k must be a whole number"),
    (b'{"history": ["1"], "k": 4.0}', 422, "k must be a whole number"),
    (b'{"history": ["1"], "k": 1000}', 422, f"k=1000 is out of range: give 1..{N_ITEMS}"),
    (b'{"history": ["1"], "include_seen": "yes"}', 422, '"include_seen" must be true or false, got "yes"'),
]


@pytest.mark.parametrize(("body", "status", "words"), _BAD_BODIES, ids=[w[:40] for _, _, w in _BAD_BODIES])
def test_bad_bodies_are_4xx_naming_the_problem(client, body, status, words):
    answer = client.post("/recommend", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status and words in answer.json()["detail"], answer.json()


def test_unknown_ids_are_listed_in_the_answer(client):
    user = client.get("/recommend", params={"user": "nobody"}).json()
    assert user["unknown"] == {"kind": "user", "ids": ["nobody"]}
    items = client.post("/recommend", json={"history": ["1", "x", "007", "y"]}).json()
    assert items["unknown"] == {"kind": "item", "ids": ["x", "y"]}


def test_health_of_an_export_names_the_model_of_its_manifest(tmp_path):
    write_manifest(tmp_path, {"role": "student", "model": {"name": "sasrec"}})
    found = recommender("sasrec")
    exported = Recommender(found.scorer, found.catalog, "student", MAX_LENGTH,
                           source={"path": str(tmp_path), "source": "onnx export"})
    exported.scorer = type("OnnxLike", (), {"kind": "sequence"})()  # not a TorchScorer: the manifest is read
    assert http.health_of(exported)["model"] == "sasrec"


def test_serve_opens_the_model_once_before_listening(monkeypatch, tmp_path):
    opened, started = [], {}
    model = recommender("bpr_mf")

    def open_once(path, role=None, cache_dir=None, threads=None):
        opened.append((str(path), role, cache_dir, threads))
        return model

    monkeypatch.setattr(Recommender, "open", staticmethod(open_once))
    monkeypatch.setattr(http.uvicorn, "run", lambda app, **options: started.update(app=app, **options))
    threads = torch.get_num_threads()
    try:
        main(["serve", str(tmp_path), "--port", "8123", "--role", "student", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert opened == [(str(tmp_path), "student", None, 1)]
    assert (started["host"], started["port"]) == ("127.0.0.1", 8123)
    with TestClient(started["app"]) as client:
        for _ in range(3):
            assert client.get("/recommend", params={"user": "5", "k": 3}).status_code == 200
    assert len(opened) == 1


def test_help_lists_serve(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "serve RUN_DIR_OR_EXPORT [--host 127.0.0.1] [--port 8000]" in capsys.readouterr().out


def _fetch(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_service_answers_on_the_loopback_address():
    found = recommender("sasrec")
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.bind(("127.0.0.1", 0))  # a free port, held from here on: no race with other processes
    port = listening.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(http.create_app(found), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start within 10 s"
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        assert _fetch(f"{base}/health")[1]["model"] == "sasrec"
        assert _fetch(f"{base}/recommend?user=005&k=3") == (200, found.recommend(user="005", k=3).to_dict())
        assert _fetch(f"{base}/recommend", {"history": HISTORY}) == (200, found.recommend(history=HISTORY).to_dict())
        status, answer = _fetch(f"{base}/recommend?user=nobody")
        assert status == 404 and "unknown user 'nobody'" in answer["detail"]
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listening.close()
    assert not thread.is_alive()
