"""`crossmed serve`: MLflow's scoring server for the exported pyfunc model, with the request size bounded.

MLflow's server reads a whole request body into memory before the model sees it; this wraps its app so a
request declaring more than the limit (or no length at all) is answered 413/411 before its body is read.
Refusals of the model itself (PHI, unreadable bytes) are MLflow errors: HTTP 400 with the reason only.
"""

import json
import logging
from pathlib import Path

from crossmed.errors import InputError

log = logging.getLogger("crossmed.serve")
DEFAULT_MAX_REQUEST_MB = 64


def _error(status: int, code: str, message: str):
    """Return a JSON error response shaped like MLflow's own ({error_code, message})."""
    from starlette.responses import Response

    return Response(json.dumps({"error_code": code, "message": message}), status_code=status, media_type="application/json")


def serving_app(model_folder: str | Path, max_request_bytes: int):
    """Return MLflow's scoring app for `model_folder` behind a request-size limit."""
    from mlflow.pyfunc import scoring_server

    folder = Path(model_folder)
    if not (folder / "MLmodel").is_file():
        raise InputError(folder / "MLmodel", "not an MLflow model folder (models/export/mlflow_model after the export stage)")
    app = scoring_server.init(scoring_server.load_model_with_mlflow_config(str(folder.resolve())))

    @app.middleware("http")
    async def bounded(request, call_next):
        if request.method in ("POST", "PUT"):
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return _error(411, "LENGTH_REQUIRED", "send the request with a Content-Length header")
            if int(length) > max_request_bytes:
                return _error(413, "REQUEST_TOO_LARGE", f"request of {int(length) / 2**20:.1f} MiB is over the "
                                                        f"{max_request_bytes / 2**20:.0f} MiB limit (crossmed serve --max-request-mb)")
        return await call_next(request)

    return app


def serve(model_folder: str | Path, host: str, port: int, max_request_mb: float) -> None:
    """Serve the model on host:port until interrupted."""
    import uvicorn

    app = serving_app(model_folder, int(max_request_mb * 2**20))
    log.info("serving %s on http://%s:%d/invocations (requests up to %g MiB); Ctrl-C stops it", model_folder, host, port,
             max_request_mb)
    uvicorn.run(app, host=host, port=port, log_level="warning")
