"""``mmoe serve``: a model directory behind an HTTP JSON API."""

from __future__ import annotations

from typing import Annotated

import typer

from ._app import app, native


@app.command("serve")
def serve_cmd(
    model_dir: Annotated[str, typer.Argument(help="Model directory from mmoe train.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(
        "--workers", min=1, help="Server processes (each loads the model).")] = 1,
    threads: Annotated[int, typer.Option(
        "--threads", min=1, help="Threads per batch of predictions, per process.")] = 1,
    max_rows: Annotated[int, typer.Option(
        "--max-rows", min=1, help="Rows per request at most (413 beyond).")] = 10_000,
    max_body: Annotated[int, typer.Option(
        "--max-body", min=1, help="Request body bytes at most (413 beyond).")] = 16 * 2**20,
    access_log: Annotated[bool, typer.Option(
        "--access-log/--no-access-log", help="One log line per request.")] = True,
) -> None:
    """Serve predictions over HTTP: POST /predict with rows (a list of objects, one per row)
    or columns (an object of lists) answers with mmoe predict's columns in the same shape;
    GET /schema (inputs, tasks, classes, model version), GET /health. Concurrent requests
    are batched; SIGTERM stops gracefully. Needs the serve extra of mmoe (fastapi, uvicorn).
    Details: docs/serving.md."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ValueError("mmoe serve needs fastapi and uvicorn: pip install 'mmoe[serve]'"
                         ) from None
    from ..app.serve import serve

    native()
    serve(model_dir, host, port, workers, threads, max_rows, max_body, access_log)
