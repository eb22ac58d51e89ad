"""`mmoe serve DIR`: a model directory behind an HTTP JSON API (FastAPI on uvicorn).

- ``POST /predict`` with ``{"rows": [{column: value, ...}, ...]}`` or
  ``{"columns": {column: [values...]}}`` answers in the same orientation with `mmoe
  predict`'s columns (id columns echoed when sent; per binary task P and its label, per
  multiclass task the class and ``<task>_proba_<class>``, regression values in the label's
  units).
- ``GET /health``; ``GET /schema`` (inputs and their JSON types, tasks and classes, the model,
  its version: the sha256 of its weights).

Requests are checked against the schema: a value of the wrong type is a 422 naming the row
and column; a missing input column, or a ``null``, is a missing value, imputed as `mmoe
predict` imputes it; bodies above ``max_body`` bytes or ``max_rows`` rows are refused (413)
before they are parsed. Concurrent requests are batched: while one batch runs, the requests
that arrive wait and run together as the next one. The model runs as the raw-column ONNX
graph on onnxruntime (:mod:`mmoe.app.export_raw`, checked against `mmoe predict` at start);
a model with hashed or sequence columns runs in torch behind the Python encoder instead.
uvicorn writes one access-log line per request and stops gracefully on SIGTERM (in-flight
requests finish).
"""

from __future__ import annotations

import asyncio
import math
import os
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI
from fastapi import Request as HttpRequest
from fastapi.responses import JSONResponse, Response

from .. import _checks
from .._version import __version__
from ..data.columns import value_key
from ..train.model_dir import load_model_dir
from .raw_columns import raw_inputs, run_graph
from .schema import schema

MAX_BODY = 16 * 2**20  # bytes
MAX_ROWS = 10_000
NUMBER = (int, float)


class RequestError(Exception):
    """A bad request: its HTTP status and one line naming the field."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Request:
    """A parsed ``/predict`` body: the input columns present (numeric ones as float64 with
    NaN, the others as mmoe's text keys with ``""`` for missing), the row count, the id
    columns sent, and whether the body came as rows (else as columns)."""

    columns: dict[str, np.ndarray]
    rows: int
    ids: dict[str, list[Any]]
    as_rows: bool


class Predictor:
    """A model directory's answers for raw columns (lists of JSON values), as `mmoe predict`
    gives them.

    Args:
        model_dir: a directory written by `mmoe train` or ``MultiTaskEstimator.save``.
        threads: onnxruntime / torch threads per batch.
    """

    def __init__(self, model_dir: str | os.PathLike, threads: int = 1):
        self.md = load_model_dir(model_dir)
        enc = self.md.encoder
        self.inputs = dict(raw_inputs(enc))  # column -> "double" | "string" | "sequence"
        self.delimiters = {n: s.delimiter for n, s in enc.lookup.specs.items()
                           if s.kind == "sequence"} if enc.lookup is not None else {}
        self.ids = tuple((self.md.config.get("columns") or {}).get("id") or ())
        self.session = None
        try:
            from .export import raw_session

            self.session = raw_session(self.md, threads, "serving in torch instead")[1]
        except ValueError:  # hashed / sequence columns: the Python encoder, then torch
            import torch

            torch.set_num_threads(threads)
        self.engine = "onnxruntime" if self.session is not None else "torch"

    def schema(self) -> dict[str, Any]:
        """``GET /schema``'s body."""
        info = schema(self.md.encoder, self.md.config)
        types = {"double": "number or null", "string": "string, number, boolean or null"}
        for item in info["inputs"]:
            col = item["column"]
            item["json"] = types.get(self.inputs[col]) or (
                f"list of ids, a string of ids joined by '{self.delimiters[col]}', or null")
        return {**info, "ids": list(self.ids), "model": self.md.model.config.name,
                "version": _model_version(self.md.path),
                "mmoe_version": __version__, "engine": self.engine}

    def predict(self, columns: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """`mmoe predict`'s columns (ids aside) for ``rows`` rows of a :class:`Request`'s
        columns; an input column left out is missing on every row."""
        feeds = {c: columns[c] if c in columns else _missing(kind, rows)
                 for c, kind in self.inputs.items()}
        if self.session is None:  # the Python encoder, then torch
            from .predict import predict_frame

            out = predict_frame(self.md.model, self.md.encoder, pd.DataFrame(feeds))
            return {c: out[c].to_numpy() for c in out.columns}
        return run_graph(self.session, self.md.encoder, feeds)


def _missing(kind: str, rows: int) -> np.ndarray:
    """A column of missing values."""
    return np.full(rows, np.nan) if kind == "double" else np.full(rows, "", dtype=object)


def _model_version(path: Any) -> str:
    from ..train.model_dir import read_manifest

    return read_manifest(path)["files"].get("model.pt", "")


def _scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _bad_value(values: list[Any], kind: str) -> tuple[int, Any] | None:
    """The first value of the wrong type (index, value), or ``None``."""
    for i, value in enumerate(values):
        if value is None:
            continue
        if kind == "double":
            if not (isinstance(value, NUMBER) and not isinstance(value, bool)
                    and math.isfinite(value)):
                return i, value
        elif kind == "sequence":
            if not (isinstance(value, str) or (isinstance(value, list)
                                               and all(map(_scalar, value)))):
                return i, value
        elif not _scalar(value):
            return i, value
    return None


_NUMBERS, _TEXT = {int, float, type(None)}, {str, type(None)}


def _column(values: list[Any], kind: str, where: Any, delimiter: str = "|") -> np.ndarray:
    """One column's JSON values as the model reads them: float64 with NaN (``double``),
    mmoe's text keys with ``""`` for missing, or (``sequence``) ids joined by ``delimiter``;
    a value of the wrong type is a 422 (``where(i)`` names the field)."""
    types = set(map(type, values))
    if kind == "double" and types <= _NUMBERS:  # the common case, without a loop in Python
        arr = np.asarray(values, dtype=np.float64)  # None -> NaN
        if not np.isinf(arr).any():
            return arr
    elif kind == "string" and types <= _TEXT:
        return np.asarray(["" if v is None else v.strip() for v in values], dtype=object)
    bad = _bad_value(values, kind)
    if bad is not None:
        what = {"double": "a finite number", "string": "a string, number, boolean"}.get(
            kind, "a list of ids, a string of ids")
        raise RequestError(422, f"{where(bad[0])}: expected {what} or null, got "
                                f"{_shown(bad[1])}")
    if kind == "sequence":
        return np.asarray(["" if v is None else v.strip() if isinstance(v, str)
                           else delimiter.join(map(value_key, v)) for v in values], dtype=object)
    return np.asarray(["" if v is None else value_key(v) for v in values], dtype=object)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_request(body: Any, inputs: dict[str, str], ids: tuple[str, ...],
                  max_rows: int = MAX_ROWS, delimiters: dict[str, str] | None = None
                  ) -> Request:
    """Check a decoded ``/predict`` body against the inputs; :class:`RequestError` names the
    first bad field.

    Example:
        >>> r = parse_request({"rows": [{"age": 31, "city": "paris"}, {"age": None}]},
        ...                   {"age": "double", "city": "string"}, ())
        >>> {c: v.tolist() for c, v in r.columns.items()}, r.rows
        ({'age': [31.0, nan], 'city': ['paris', '']}, 2)
        >>> parse_request({"rows": [{"age": "old"}]}, {"age": "double"}, ())
        Traceback (most recent call last):
        ...
        mmoe.app.serve.RequestError: rows[0].age: expected a finite number or null, got 'old'
    """
    if not isinstance(body, dict) or len(body) != 1 or not (
            isinstance(body.get("rows"), list) or isinstance(body.get("columns"), dict)):
        raise RequestError(422, "body: expected {\"rows\": [{column: value, ...}, ...]} or "
                                "{\"columns\": {column: [value, ...]}}")
    wanted = (*inputs, *ids)
    if "rows" in body:
        rows = body["rows"]
        if len(rows) > max_rows:
            raise RequestError(413, f"rows: {len(rows)} rows, at most {max_rows} per request")
        columns: dict[str, list[Any]] = {}
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise RequestError(422, f"rows[{i}]: expected an object, got {_shown(row)}")
        for col in wanted:
            if any(col in row for row in rows):
                columns[col] = [row.get(col) for row in rows]
        n, as_rows = len(rows), True
    else:
        given = body["columns"]
        lengths = {c: len(v) for c, v in given.items() if isinstance(v, list)}
        for col, values in given.items():
            if not isinstance(values, list):
                raise RequestError(422, f"columns.{col}: expected a list, got {_shown(values)}")
        if len(set(lengths.values())) > 1:
            raise RequestError(422, f"columns: lists of different lengths {lengths}")
        n = next(iter(lengths.values()), 0)
        if n > max_rows:
            raise RequestError(413, f"columns: {n} rows, at most {max_rows} per request")
        columns = {c: given[c] for c in wanted if c in given}
        as_rows = False
    if n == 0:
        raise RequestError(422, "body: no rows")
    converted = {}
    for col, kind in inputs.items():
        if col in columns:
            converted[col] = _column(columns[col], kind, (lambda i, c=col: f"rows[{i}].{c}")
                                     if as_rows else (lambda i, c=col: f"columns.{c}[{i}]"),
                                     (delimiters or {}).get(col, "|"))
    return Request(converted, n, {c: columns[c] for c in ids if c in columns}, as_rows)


class Batcher:
    """Runs concurrent requests together: while a batch runs (in a worker thread), arriving
    requests queue; the next batch takes every queued request (up to ``max_rows`` rows)."""

    def __init__(self, predictor: Predictor, max_rows: int = 4 * MAX_ROWS):
        from concurrent.futures import ThreadPoolExecutor

        self.predictor, self.max_rows = predictor, max_rows
        # one thread runs the batches: one set of buffers, memory that stays flat
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="mmoe-batch")
        self.queue: asyncio.Queue[tuple[Request, asyncio.Future]] | None = None
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False)

    async def predict(self, request: Request) -> dict[str, np.ndarray]:
        future = asyncio.get_running_loop().create_future()
        assert self.queue is not None
        await self.queue.put((request, future))
        return await future

    async def _run(self) -> None:
        assert self.queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            rows = batch[0][0].rows
            while not self.queue.empty() and rows < self.max_rows:
                batch.append(self.queue.get_nowait())
                rows += batch[-1][0].rows
            batch = [(r, f) for r, f in batch if not f.cancelled()]  # client gone
            if not batch:
                continue
            try:
                columns = _joined([r for r, _ in batch], self.predictor.inputs)
                out = await loop.run_in_executor(self.executor, self.predictor.predict, columns,
                                                 sum(r.rows for r, _ in batch))
            except Exception as err:  # noqa: BLE001 (every waiting request gets the error)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            start = 0
            for request, future in batch:
                part = {k: v[start:start + request.rows] for k, v in out.items()}
                start += request.rows
                if not future.done():
                    future.set_result(part)


def _joined(requests: list[Request], inputs: dict[str, str]) -> dict[str, np.ndarray]:
    """One request's columns from several (a column some lack: missing on their rows)."""
    if len(requests) == 1:
        return requests[0].columns
    names = {c for r in requests for c in r.columns}
    return {c: np.concatenate([r.columns.get(c, _missing(inputs[c], r.rows)) for r in requests])
            for c in names}


def _answer(request: Request, out: dict[str, np.ndarray]) -> dict[str, Any]:
    """The response body: `mmoe predict`'s columns in the request's orientation."""
    cols = {**request.ids, **{k: v.tolist() for k, v in out.items()}}
    if not request.as_rows:
        return {"columns": cols}
    names = list(cols)
    return {"rows": [dict(zip(names, values, strict=True)) for values in zip(*cols.values(),
                                                                            strict=True)]}


def create_app(model_dir: str | os.PathLike | None = None, *, max_rows: int = MAX_ROWS,
               max_body: int = MAX_BODY, threads: int = 1) -> Any:
    """The FastAPI application serving ``model_dir`` (default: ``$MMOE_SERVE_DIR``, how
    ``--workers`` processes find it)."""
    model_dir = model_dir or os.environ.get("MMOE_SERVE_DIR")
    _checks.check(bool(model_dir), "no model directory: mmoe serve DIR")
    predictor = Predictor(model_dir, threads)
    batcher = Batcher(predictor)
    schema_body = orjson.dumps(predictor.schema())

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title=f"mmoe: {predictor.md.model.config.name}", version=__version__,
                  lifespan=lifespan)

    def error(status: int, message: str) -> Response:
        return JSONResponse({"detail": message}, status_code=status)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/schema")
    async def get_schema() -> Response:
        return Response(schema_body, media_type="application/json")

    @app.post("/predict")
    async def post_predict(http: HttpRequest) -> Response:
        size = http.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > max_body):
            return error(413, f"body: {size} bytes, at most {max_body}")
        chunks, total = [], 0
        async for chunk in http.stream():
            total += len(chunk)
            if total > max_body:
                return error(413, f"body: more than {max_body} bytes")
            chunks.append(chunk)
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as err:
            return error(422, f"body: not JSON ({err})")
        try:
            request = parse_request(body, predictor.inputs, predictor.ids, max_rows,
                                    predictor.delimiters)
        except RequestError as err:
            return error(err.status, str(err))
        out = await batcher.predict(request)
        return Response(orjson.dumps(_answer(request, out)), media_type="application/json")

    return app


def serve(model_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8000,
          workers: int = 1, threads: int = 1, max_rows: int = MAX_ROWS,
          max_body: int = MAX_BODY, access_log: bool = True) -> None:
    """Run the server until SIGINT/SIGTERM (graceful: in-flight requests finish)."""
    import uvicorn

    load_model_dir(model_dir)  # a bad directory fails here, once, in one line
    os.environ["MMOE_SERVE_DIR"] = os.path.abspath(model_dir)
    os.environ["MMOE_SERVE_LIMITS"] = f"{max_rows},{max_body},{threads}"
    uvicorn.run("mmoe.app.serve:_app_from_env", factory=True, host=host, port=port,
                workers=workers, access_log=access_log, log_level="info",
                timeout_graceful_shutdown=30)


def _app_from_env() -> Any:
    """The application of each uvicorn worker, from what :func:`serve` put in the
    environment."""
    max_rows, max_body, threads = map(int, os.environ.get(
        "MMOE_SERVE_LIMITS", f"{MAX_ROWS},{MAX_BODY},1").split(","))
    return create_app(max_rows=max_rows, max_body=max_body, threads=threads)
