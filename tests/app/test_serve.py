"""`mmoe serve`: answers equal to `mmoe predict`, the schema, request validation and limits,
hostile clients (malformed JSON, wrong types, huge bodies, slow and vanishing clients),
batching of concurrent requests, the access log and a graceful SIGTERM."""

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from mmoe.app.estimator import MultiTaskEstimator  # noqa: E402
from mmoe.app.predict import predict_file  # noqa: E402
from mmoe.app.serve import Batcher, Request, parse_request  # noqa: E402
from mmoe.train.model_dir import read_manifest  # noqa: E402

from .conftest import make_table  # noqa: E402

TASKS = ["buys:binary:yes", "spend:regression", "segment:multiclass"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model_dir, log, *extra):
        self.port = _port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mmoe", "serve", str(model_dir), "--port", str(self.port),
             *extra], stdout=open(log, "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        end = time.time() + 90
        while time.time() < end:
            assert self.proc.poll() is None, log.read_text()
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("server did not start: " + log.read_text())

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
        conn.request(method, path, body=data, headers=headers or {})
        res = conn.getresponse()
        payload = res.read()
        conn.close()
        return res.status, json.loads(payload) if payload else None

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def _model(tmp_path, hashed=False):
    df = make_table(400, 0).drop(columns="w")
    est = MultiTaskEstimator(tasks=TASKS, epochs=3, threads=1, id_columns=["user_id"],
                             features=["city:hashed:buckets=64"] if hashed else ())
    return est.fit(df).save(tmp_path / ("hashed" if hashed else "m"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    model = _model(tmp)
    server = Server(model, tmp / "server.log")
    yield server, model, tmp
    if server.proc.poll() is None:
        server.stop()


def _rows(n=40, seed=3):
    df = make_table(n, seed).drop(columns=["w", "buys", "spend", "segment"])
    df.loc[::5, "city"] = "atlantis"  # unseen
    return df


def _expected(model, df, tmp):
    df.to_csv(tmp / "rows.csv", index=False)
    predict_file(model, tmp / "rows.csv", tmp / "pred.csv")
    return pd.read_csv(tmp / "pred.csv")


def _check(got: pd.DataFrame, want: pd.DataFrame):
    assert list(got.columns) == list(want.columns)
    for col in want.columns:
        if pd.api.types.is_numeric_dtype(want[col]):
            scale = 100.0 if col == "spend" else 1.0  # dollars: float32 resolution
            np.testing.assert_allclose(got[col].astype(float), want[col], atol=1e-5 * scale)
        else:
            assert got[col].tolist() == want[col].tolist(), col


def test_rows_and_columns_answer_as_mmoe_predict(served):
    server, model, tmp = served
    df = _rows()
    want = _expected(model, df, tmp)
    records = json.loads(df.to_json(orient="records"))  # NaN -> null
    status, body = server.call("POST", "/predict", {"rows": records})
    assert status == 200
    _check(pd.DataFrame(body["rows"]), want)
    status, body = server.call("POST", "/predict", {"columns": {
        c: json.loads(df[c].to_json(orient="values")) for c in df.columns}})
    assert status == 200
    _check(pd.DataFrame(body["columns"]), want)


def test_a_missing_column_is_imputed_as_predict_does(served):
    server, model, tmp = served
    df = _rows(10, 4)
    df["x2"] = np.nan
    want = _expected(model, df, tmp)
    records = json.loads(df.drop(columns="x2").to_json(orient="records"))
    status, body = server.call("POST", "/predict", {"rows": records})
    assert status == 200
    _check(pd.DataFrame(body["rows"]), want)


def test_schema_and_health(served):
    server, model, _ = served
    status, schema = server.call("GET", "/schema")
    assert status == 200 and schema["engine"] == "onnxruntime" and schema["ids"] == ["user_id"]
    assert [i["column"] for i in schema["inputs"]] == ["x1", "x2", "city"]
    assert schema["inputs"][0]["json"] == "number or null"
    assert {t["name"]: t.get("classes") for t in schema["tasks"]}["segment"] == [
        "high", "low", "mid"]
    assert schema["version"] == read_manifest(model)["files"]["model.pt"]
    assert server.call("GET", "/health") == (200, {"status": "ok"})


@pytest.mark.parametrize("body,status,needle", [
    (b'{"rows": [{"x1": 1', 422, "not JSON"),
    ({"rows": [{"x1": "one"}]}, 422, "rows[0].x1: expected a finite number"),
    ({"rows": [{"x1": 1.0}, {"x1": True}]}, 422, "rows[1].x1"),
    ({"rows": [{"city": {"a": 1}}]}, 422, "rows[0].city"),
    ({"columns": {"x1": [1, 2], "x2": [1]}}, 422, "different lengths"),
    ({"columns": {"x1": 3}}, 422, "columns.x1: expected a list"),
    ({"rows": [1, 2]}, 422, "rows[0]: expected an object"),
    ({"rows": []}, 422, "no rows"),
    ([{"x1": 1}], 422, "body: expected"),
    ({"rows": [{"x1": 1}] * 10_001}, 413, "at most 10000"),
])
def test_bad_requests_are_named_and_the_next_request_is_fine(served, body, status, needle):
    server, _, _ = served
    got, detail = server.call("POST", "/predict", body)
    assert got == status and needle in detail["detail"]
    assert server.call("POST", "/predict", {"rows": [{"x1": 0.5, "city": "rome"}]})[0] == 200


def test_huge_bodies_are_refused_before_reading(served):
    server, _, _ = served
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{")
        assert b" 413 " in s.recv(1000)
    assert server.call("POST", "/predict", {"rows": [{"x1": 1.0}]})[0] == 200


def test_slow_and_vanishing_clients_do_not_block_others(served):
    server, _, _ = served
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"ro")
    for _ in range(5):  # clients that send a request and leave without reading
        with socket.create_connection(("127.0.0.1", server.port)) as gone:
            body = json.dumps({"rows": [{"x1": 1.0}] * 500}).encode()
            gone.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
    t0 = time.perf_counter()
    assert server.call("POST", "/predict", {"rows": [{"x1": 1.0}]})[0] == 200
    assert time.perf_counter() - t0 < 5
    slow.close()
    results = []

    def one():
        results.append(server.call("POST", "/predict", {"rows": [{"x1": 0.1}] * 3}))

    threads = [threading.Thread(target=one) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200] * 16
    assert all(len(b["rows"]) == 3 for _, b in results)


def test_access_log_and_graceful_sigterm(tmp_path, served):
    _, model, _ = served
    server = Server(model, tmp_path / "log.txt")
    done = []
    body = {"rows": [{"x1": 1.0}] * 5000}
    worker = threading.Thread(target=lambda: done.append(server.call("POST", "/predict", body)))
    worker.start()
    time.sleep(0.05)
    # uvicorn shuts down, then re-raises the signal it caught: the exit status says SIGTERM
    assert server.stop() in (0, -signal.SIGTERM)
    worker.join(30)
    log = (tmp_path / "log.txt").read_text()
    assert '"GET /health HTTP/1.1" 200' in log
    assert "Shutting down" in log and "Finished server process" in log  # graceful
    assert done and done[0][0] == 200  # the request in flight was answered, not cut


def test_a_hashed_model_is_served_by_torch(tmp_path):
    model = _model(tmp_path, hashed=True)
    server = Server(model, tmp_path / "log.txt")
    try:
        assert server.call("GET", "/schema")[1]["engine"] == "torch"
        df = _rows(20, 6)
        want = _expected(model, df, tmp_path)
        status, body = server.call("POST", "/predict",
                                   {"rows": json.loads(df.to_json(orient="records"))})
        assert status == 200
        _check(pd.DataFrame(body["rows"]), want)
    finally:
        server.stop()


def test_concurrent_requests_run_as_one_batch():
    class Slow:
        inputs = {"a": "double"}
        calls: list = []

        def predict(self, columns, rows):
            self.calls.append(rows)
            time.sleep(0.2)
            return {"y": columns["a"] * 2}

    async def main():
        batcher = Batcher(Slow())
        batcher.start()
        reqs = [parse_request({"rows": [{"a": float(i)}] * (i + 1)}, {"a": "double"}, ())
                for i in range(6)]
        first = asyncio.create_task(batcher.predict(reqs[0]))
        await asyncio.sleep(0.05)  # the first batch runs: the others arrive meanwhile
        outs = await asyncio.gather(first, *(batcher.predict(r) for r in reqs[1:]))
        await batcher.stop()
        return reqs, outs

    reqs, outs = asyncio.run(main())
    assert Slow.calls == [1, 20]  # the first alone; the five that queued meanwhile together
    for i, (req, out) in enumerate(zip(reqs, outs, strict=True)):
        assert isinstance(req, Request) and out["y"].tolist() == [2.0 * i] * (i + 1)


def test_serve_refuses_a_bad_directory_in_one_line(tmp_path, capsys):
    from mmoe.cli import main

    with pytest.raises(SystemExit) as done:
        main(["serve", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip().splitlines()
    assert done.value.code == 2 and len(err) == 1 and "nope" in err[0]


def test_a_sequence_model_takes_lists_or_joined_ids(tmp_path):
    rng = np.random.default_rng(0)
    df = make_table(300, 0).drop(columns="w")
    items = [f"i{k}" for k in range(10)]
    df["item"] = rng.choice(items, len(df))
    df["history"] = ["|".join(rng.choice(items, rng.integers(0, 5))) for _ in range(len(df))]
    est = MultiTaskEstimator(tasks=TASKS, epochs=2, threads=1, id_columns=["user_id"],
                             features=["item:categorical:embedding_dim=4",
                                       "history:sequence:share=item,max_len=3"]).fit(df)
    model = est.save(tmp_path / "seq")
    server = Server(model, tmp_path / "log.txt")
    try:
        schema = server.call("GET", "/schema")[1]
        assert schema["engine"] == "onnxruntime"
        assert "list of ids" in {i["column"]: i["json"] for i in schema["inputs"]}["history"]
        rows = df.drop(columns=["buys", "spend", "segment"]).head(12)
        want = _expected(model, rows, tmp_path)
        as_text = json.loads(rows.to_json(orient="records"))
        as_lists = [{**r, "history": r["history"].split("|") if r["history"] else []}
                    for r in as_text]
        for body in (as_text, as_lists):
            status, got = server.call("POST", "/predict", {"rows": body})
            assert status == 200
            _check(pd.DataFrame(got["rows"]), want)
        bad = server.call("POST", "/predict", {"rows": [{"history": [{"a": 1}]}]})
        assert bad[0] == 422 and "rows[0].history" in bad[1]["detail"]
    finally:
        server.stop()
