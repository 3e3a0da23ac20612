"""``nmt-serve``: the real console script on loopback under 32 concurrent clients gives exactly nmt-translate's output;
a battery of bad requests gets 4xx answers naming the problem and leaves the service running; endpoints agree with
the Python API; the tool's own errors exit 2."""

# ruff: noqa: E501 - the table of bad requests reads best one request per line

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from corpus_io import read_gz_lines
from integration_helpers import make_checkpoint, tiny_config
from serve_helpers import post, start_server

import nmt
from nmt.config import AttentionType, RNNConfig

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve]'")
pytest.importorskip("httpx", reason="the dev extra is not installed: pip install -e '.[dev]'")

from fastapi.testclient import TestClient

from nmt.serve.app import create_app
from nmt.serve.service import Limits, Service

pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------- the real service
@pytest.fixture(scope="module")
def server(trained_checkpoint: Path, m30k_slice: Path):
    env = {**os.environ, "NMT_DATA_DIR": str(m30k_slice), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    # a piece limit over the longest test line, so that it is truncated exactly as nmt-translate does
    proc, url = start_server(trained_checkpoint, env, "--max-sentence-pieces", "400", "--quiet")
    yield url
    proc.terminate()
    proc.wait(30)


def test_32_concurrent_clients_get_exactly_the_cli_output(server, trained_lines, trained_cli):
    plain, _ = trained_cli(trained_lines)
    texts, links = trained_cli(trained_lines, "--alignments")
    # 64 requests of 1 to 3 sentences, every other one asking for alignments, from 32 clients at once
    requests = []
    for k in range(64):
        start = (5 * k) % len(trained_lines)
        rows = [(start + d) % len(trained_lines) for d in range(1 + k % 3)]
        requests.append((rows, k % 2 == 1))

    def client(request):
        rows, aligned = request
        return post(server + "/translate", {"sentences": [trained_lines[i] for i in rows], "alignments": aligned})

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(client, requests))
    for (rows, aligned), (status, body) in zip(requests, answers):
        assert status == 200, body
        got = body["translations"]
        assert [t["text"] for t in got] == [(texts if aligned else plain)[i] for i in rows]
        if aligned:
            assert [t["hypotheses"][0]["alignment"] for t in got] == [links[i] for i in rows]
        else:
            assert all("alignment" not in t["hypotheses"][0] for t in got)
    with urllib.request.urlopen(server + "/health") as r:
        stats = json.loads(r.read())["batching"]
    assert stats["jobs"] == 64 and stats["batches"] < 64  # requests were batched together
    assert stats["largest_batch_items"] > 3


def test_the_page_and_the_api_description_are_served(server):
    with urllib.request.urlopen(server + "/") as r:
        page = r.read().decode("utf-8")
    assert "explorer.js" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    with urllib.request.urlopen(server + "/static/explorer.js") as r:
        assert b"fetch(" in r.read()
    with urllib.request.urlopen(server + "/openapi.json") as r:
        paths = json.loads(r.read())["paths"]
    assert {"/translate", "/align", "/explore", "/health"} <= set(paths)


# --------------------------------------------------------------------------------------------- bad requests
LIMITS = Limits(max_request_sentences=4, max_sentence_pieces=40, max_sentence_chars=300, max_body_bytes=4000)
OK = {"sentences": ["Ein Hund rennt."]}
JSON = {"Content-Type": "application/json"}

# (name, method, path, request keyword arguments, status, words the error must contain)
BAD = [
    ("not JSON", "post", "/translate", {"content": b'{"sentences": [', "headers": JSON}, 400, "not valid JSON"),
    ("no body", "post", "/translate", {}, 400, "needs a JSON body"),
    ("form body", "post", "/translate", {"data": {"sentences": "x"}}, 415, "application/json"),
    ("text body", "post", "/translate", {"content": b"hallo", "headers": {"Content-Type": "text/plain"}}, 415, "JSON"),
    ("a list", "post", "/translate", {"json": ["Ein Hund."]}, 422, "body: Input should be a valid dictionary"),
    ("no sentences field", "post", "/translate", {"json": {}}, 422, "sentences: Field required"),
    ("sentences a string", "post", "/translate", {"json": {"sentences": "x"}}, 422, "sentences: Input should be a valid list"),
    ("a number", "post", "/translate", {"json": {"sentences": ["a", 1]}}, 422, "sentences[1]: Input should be a valid string"),
    ("unknown option", "post", "/translate", {"json": {**OK, "beam": 3}}, 422, "beam: Extra inputs are not permitted"),
    ("beam as text", "post", "/translate", {"json": {**OK, "beam_size": "4"}}, 422, "beam_size: Input should be a valid integer"),
    ("beam 0", "post", "/translate", {"json": {**OK, "beam_size": 0}}, 422, "beam_size: Input should be greater than or equal to 1"),
    ("beam 1000", "post", "/translate", {"json": {**OK, "beam_size": 1000}}, 422, "beam_size: Input should be less than or equal to 64"),
    ("nbest > beam", "post", "/translate", {"json": {**OK, "beam_size": 2, "nbest": 3}}, 422, "nbest: 3 is more than beam_size 2"),
    ("flag as text", "post", "/translate", {"json": {**OK, "alignments": "yes"}}, 422, "alignments: Input should be a valid boolean"),
    ("NaN", "post", "/translate", {"content": b'{"sentences": ["a"], "lenpen": NaN}', "headers": JSON}, 422, "lenpen: Input should be a finite number"),
    ("threshold 2", "post", "/translate", {"json": {**OK, "alignment_threshold": 2.0}}, 422, "alignment_threshold"),
    ("no sentences", "post", "/translate", {"json": {"sentences": []}}, 422, "sentences: no sentences"),
    ("too many", "post", "/translate", {"json": {"sentences": ["a"] * 5}}, 413, "sentences: 5 sentences, more than the limit of 4"),
    ("too many chars", "post", "/translate", {"json": {"sentences": ["a", "b" * 301]}}, 422, "sentences[1]: 301 characters, more than the limit of 300"),
    ("too many pieces", "post", "/translate", {"json": {"sentences": ["ä ö ü " * 20]}}, 422, "more than the limit of 40 (--max-sentence-pieces)"),
    ("body too large", "post", "/translate", {"json": {"sentences": ["a" * 2000, "b" * 2000]}}, 413, "larger than the limit of 4000 bytes"),
    ("chunked too large", "post", "/translate", {"content": iter([b'{"sentences": ["' + b"a" * 3000, b"b" * 3000 + b'"]}']), "headers": JSON}, 413, "4000 bytes"),
    ("deep nesting", "post", "/translate", {"content": b"[" * 1900 + b"]" * 1900, "headers": JSON}, 400, "nested too deeply"),
    ("invalid UTF-8", "post", "/translate", {"content": b'{"sentences": ["\xff\xfe"]}', "headers": JSON}, 400, "not valid UTF-8 (byte 16)"),
    ("pairs mismatch", "post", "/align", {"json": {"src": ["a", "b"], "tgt": ["a"]}}, 422, "tgt: 1 sentences for the 2 of src"),
    ("unknown method", "post", "/align", {"json": {"src": ["a"], "tgt": ["a"], "method": "bidir"}}, 422, "method: must be 'shift' or 'attention'"),
    ("a file name", "post", "/align", {"json": {"src": "/etc/passwd", "tgt": ["a"]}}, 422, "src: Input should be a valid list"),
    ("explore a list", "post", "/explore", {"json": {"sentence": ["a"]}}, 422, "sentence: Input should be a valid string"),
    ("explore too long", "post", "/explore", {"json": {"sentence": "x" * 301}}, 422, "sentence: 301 characters"),
    ("wrong method", "get", "/translate", {}, 405, "Method Not Allowed"),
    ("unknown path", "get", "/translations", {}, 404, "Not Found"),
    ("path traversal", "get", "/static/../../../../etc/passwd", {}, 404, "Not Found"),
    ("encoded traversal", "get", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd", {}, 404, "Not Found"),
]  # fmt: skip


@pytest.fixture(scope="module")
def client(tiny_checkpoint: Path):
    model = nmt.load(tiny_checkpoint, device="cpu")
    with TestClient(create_app(Service(model, LIMITS, name="tiny.pt"))) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_json_error_naming_the_problem(client, method, path, kwargs, status, words):
    r = getattr(client, method)(path, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and words in body["error"], body
    assert "Traceback" not in body["error"]


def test_the_service_still_answers_after_the_battery(client, tiny_checkpoint):
    for _, method, path, kwargs, _, _ in BAD:
        getattr(client, method)(path, **kwargs)
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["limits"]["max_request_sentences"] == 4
    assert health["model"]["name"] == "tiny.pt" and health["model"]["layers"] == 2
    r = client.post("/translate", json={"sentences": ["Ein Hund rennt.", ""], "nbest": 2, "attention": True})
    assert r.status_code == 200
    (first, empty) = r.json()["translations"]
    assert len(first["hypotheses"]) == 2 and empty["text"] == "" and empty["score"] == 0.0
    att = first["hypotheses"][0]["attention"]
    assert (len(att), len(att[0])) == (len(first["hypotheses"][0]["tokens"]) + 1, len(first["source_tokens"]) + 1)


# --------------------------------------------------------------------------------------------- endpoints = API
def test_align_and_explore_agree_with_the_python_api(client, tiny_checkpoint, data_root: Path):
    model = nmt.load(tiny_checkpoint, device="cpu")
    pairs = zip(
        read_gz_lines(data_root / "align-de-en" / "deen.de.gz", 60),
        read_gz_lines(data_root / "align-de-en" / "deen.en.gz", 60),
    )
    pieces = lambda s: len(model.tokenizer.encode_src([s])[0])  # noqa: E731
    src, tgt = zip(*[(s, t) for s, t in pairs if max(pieces(s), pieces(t)) <= 40][:4])  # within the limit
    src, tgt = list(src), list(tgt)
    r = client.post("/align", json={"src": src, "tgt": tgt, "method": "attention"})
    assert r.status_code == 200, r.json()
    assert [a["alignment"] for a in r.json()["alignments"]] == [
        a.pharaoh for a in model.align(src, tgt, method="attention")
    ]

    r = client.post("/explore", json={"sentence": src[0], "beam_size": 2})
    assert r.status_code == 200
    page = r.json()
    (result,) = model.translate([src[0]], beam_size=2)
    assert page["translation"] == result.text and page["target_tokens"] == result.hypotheses[0].tokens
    att = page["attention"]
    assert (att["architecture"], att["layers"], att["heads"]) == ("transformer", 2, 2)
    assert len(att["views"]) == 2 * 3  # per layer: the average and each head
    default = att["views"][att["default"]]
    assert (default["layer"], default["heads"]) == (model.alignment_layer, None)
    rows, cols = len(result.hypotheses[0].tokens) + 1, len(result.source_tokens) + 1
    assert all(len(v["matrix"]) == rows and len(v["matrix"][0]) == cols for v in att["views"])
    assert len(page["source_token_words"]) == cols - 1 and max(page["source_token_words"]) == len(src[0].split()) - 1


def test_rnn_models_show_their_one_attention_or_a_note_without_any(tiny_rnn_checkpoint, tiny_tokenizer, tmp_path):
    with TestClient(create_app(Service(nmt.load(tiny_rnn_checkpoint, device="cpu"), LIMITS))) as c:
        att = c.post("/explore", json={"sentence": "Ein Hund rennt."}).json()["attention"]
        assert (att["architecture"], len(att["views"]), att["views"][0]["layer"]) == ("rnn", 1, None)
    cfg = tiny_config(RNNConfig(embed_dim=16, hidden_dim=16, attention=AttentionType.none))
    plain = nmt.load(make_checkpoint(tmp_path / "plain.pt", cfg, tiny_tokenizer), device="cpu")
    with TestClient(create_app(Service(plain, LIMITS))) as c:
        page = c.post("/explore", json={"sentence": "Ein Hund rennt."}).json()
        assert page["attention"] is None and "no attention" in page["note"] and page["translation"] is not None
        r = c.post("/translate", json={"sentences": ["Ein Hund."], "alignments": True})
        assert r.status_code == 422 and "alignments: this model has no attention" in r.json()["error"]
        assert c.post("/translate", json={"sentences": ["Ein Hund."]}).status_code == 200


def test_the_tool_reports_its_own_mistakes_with_exit_2(tmp_path, tiny_checkpoint, capsys):
    from nmt.cli.serve import main

    assert main(["-c", str(tmp_path / "missing.pt")]) == 2
    assert "nmt-serve: error:" in capsys.readouterr().err
    assert main(["-c", str(tiny_checkpoint), "--max-batch-tokens", "0"]) == 2
    assert "--max-batch-tokens must be positive" in capsys.readouterr().err
    assert main(["-c", str(tiny_checkpoint), "--port", "70000"]) == 2
