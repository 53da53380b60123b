"""Serve one registry alias over HTTP: ``GET /health`` and ``POST /predict`` (FastAPI).

The server resolves ``models:/NAME@ALIAS`` to a version **once, at start**, and loads that
exact version (``models:/NAME/VERSION``), so what ``/health`` reports is what answers
``/predict``. Moving the alias later does not change a running server: restart it.

Requests are validated against the model's signature before the model sees them (pydantic):
every column required, no unknown columns, numbers must be JSON numbers, categories must be
known values. Problems with the request are answered with 4xx and a message naming the
field; the server keeps serving.

* ``400``: the body is not JSON at all;
* ``422``: the body is JSON but not ``{"records": [{...}, ...]}`` with valid records, or a
  number is outside what the model can take (:data:`MAX_ABS_NUMBER`);
* every other 4xx (unknown path, wrong method) has the same ``{"error", "problems"}`` shape;
* ``500``: the model itself failed on valid input (a bug, never bad input).

This module is the app; :mod:`scripts.mlops.server` starts it as a child process. From a
shell: ``python -m scripts.mlops serve --model NAME --alias ALIAS --port 0``.
"""

import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from . import data
from .errors import MlopsError, RegistryError

if TYPE_CHECKING:  # imported lazily: the CLI's --help should not pay for FastAPI or MLflow
    from fastapi import FastAPI

DEFAULT_HOST = "127.0.0.1"
MAX_RECORDS = 10_000
#: Largest magnitude accepted for a numeric feature. No churn feature is meaningful beyond
#: it, and values near the float limit (~1.8e308) overflow inside the scaler.
MAX_ABS_NUMBER = 1e12


@dataclass(frozen=True)
class ServedModel:
    """The model version a server loaded, and how it was asked for."""

    name: str
    alias: str
    version: int
    run_id: str
    model: Any  # mlflow.pyfunc.PyFuncModel

    @property
    def uri(self) -> str:
        from .registry import model_uri

        return model_uri(self.name, self.version)


def load_served(model_name: str, alias: str, *, preload: threading.Thread | None = None) -> ServedModel:
    """Resolve ``model_name@alias`` to a version and load exactly that version.

    ``preload`` is a thread importing the loader's modules (see :func:`preload_loader`); it is
    joined before loading, so the two never import the same module at once.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from . import registry

    registry.require_model(model_name)
    try:
        info = registry.version_for_alias(model_name, alias)
    except RegistryError as exc:
        raise RegistryError(
            f"cannot serve {model_name}@{alias}: {exc.problem}",
            f"point the alias at a version first: `{registry.promote_hint(model_name, alias)}`",
        ) from None
    if preload is not None:
        preload.join()
    try:
        model = mlflow.pyfunc.load_model(info.uri)
    except (MlflowException, OSError) as exc:
        raise RegistryError(
            f"could not load {info.uri} (alias {alias!r}): {str(exc).splitlines()[0][:300]}",
            "check that the version's artifacts still exist (is the workspace the one it was trained in?).",
        ) from None
    return ServedModel(model_name, alias, info.version, info.run_id, model)


def _field_type(name: str, kind: str) -> Any:
    """The pydantic type of column ``name`` of MLflow type ``kind`` (strict: no string-to-number coercion)."""
    from typing import Annotated

    from pydantic import Field, StrictBool, StrictStr

    if name in data.CATEGORY_VALUES:
        return Literal[data.CATEGORY_VALUES[name]]
    if kind in ("double", "float"):
        return Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_ABS_NUMBER, le=MAX_ABS_NUMBER)]
    if kind in ("long", "integer"):
        return Annotated[int, Field(strict=True, ge=-(2**63), le=2**63 - 1)]
    if kind == "boolean":
        return StrictBool
    return StrictStr


def record_model(served_model: Any) -> Any:
    """A pydantic model for one input record, from the model's signature (else the churn schema)."""
    from pydantic import ConfigDict, create_model

    schema = None
    metadata = getattr(served_model, "metadata", None)
    if metadata is not None:
        schema = metadata.get_input_schema()
    columns = list(schema.inputs) if schema is not None and schema.has_input_names() else []
    if not columns:  # no signature: fall back to the churn schema
        kinds = {name: "string" if name in data.CATEGORICAL else "double" for name in data.FEATURES}
        fields: dict[str, tuple[Any, Any]] = {name: (_field_type(name, kind), ...) for name, kind in kinds.items()}
    else:
        fields = {
            str(c.name): (_field_type(str(c.name), str(c.type.name)), ... if getattr(c, "required", True) else None)
            for c in columns
        }
    return create_model("Record", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]


def _field_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if part == "body":
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "body"


def _problems(errors: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if error.get("type") == "extra_forbidden":
            message = "unknown field (not in the model's signature)"
        elif error.get("type") == "missing":
            message = "required field is missing"
        else:
            message = str(error.get("msg", "invalid value"))
        out.append({"field": _field_path(loc), "message": message, "type": str(error.get("type", ""))})
    return out


def create_app(model_name: str, alias: str, *, served: ServedModel | None = None) -> "FastAPI":
    """The FastAPI app serving ``models:/model_name@alias`` (loaded now, once).

    Pass ``served`` to reuse an already loaded model (tests and benchmarks).
    """
    import numpy as np
    import pandas as pd
    from fastapi import FastAPI, Request  # noqa: F811
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    served = served or load_served(model_name, alias)
    Record = record_model(served.model)
    columns = list(Record.model_fields)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        records: list[Record] = Field(min_length=1, max_length=MAX_RECORDS)  # type: ignore[valid-type]

    app = FastAPI(
        title=f"{served.name}@{served.alias}",
        description=f"Serves {served.uri} (alias {served.alias!r} at start-up).",
        version=str(served.version),
    )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse(
            status_code=exc.status_code,
            content={
                "error": f"{detail}: {request.method} {request.url.path}",
                "problems": [
                    {"field": "path", "message": "use GET /health or POST /predict", "type": f"http_{exc.status_code}"}
                ],
            },
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(error.get("type") == "json_invalid" for error in errors):
            return JSONResponse(
                status_code=400,
                content={
                    "error": "the request body is not valid JSON",
                    "problems": [
                        {"field": "body", "message": 'send JSON such as {"records": [{...}]}', "type": "json_invalid"}
                    ],
                },
            )
        problems = _problems(errors)
        summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
        return JSONResponse(status_code=422, content={"error": f"invalid request: {summary}", "problems": problems})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": served.name,
            "alias": served.alias,
            "version": served.version,
            "run_id": served.run_id,
            "model_uri": served.uri,
        }

    @app.post("/predict", response_model=None)
    def predict(body: PredictRequest) -> dict[str, Any] | JSONResponse:
        rows = [record.model_dump() for record in body.records]  # type: ignore[attr-defined]
        frame = pd.DataFrame(rows, columns=columns)
        try:
            with np.errstate(over="raise", invalid="raise"):
                predictions = served.model.predict(frame)
        except (ValueError, OverflowError, FloatingPointError) as exc:
            # The request matched the signature, but the model cannot compute on these values
            # (e.g. a number that overflows inside the pipeline): the client's input, so 4xx.
            return JSONResponse(
                status_code=422,
                content={
                    "error": f"the model cannot compute on this input: {str(exc).splitlines()[0][:300]}",
                    "problems": [
                        {
                            "field": "records",
                            "message": "values outside what the model was trained on",
                            "type": "model_input",
                        }
                    ],
                },
            )
        values = (
            np.asarray(predictions).tolist()
            if not isinstance(predictions, pd.DataFrame)
            else (predictions.to_dict("records"))
        )
        return {
            "model": served.name,
            "alias": served.alias,
            "version": served.version,
            "run_id": served.run_id,
            "predictions": values,
        }

    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; a clear error when the port is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit TCP_NODELAY from the listening socket. Without it, a
    # response written in two pieces (headers, then body) waits for the client's delayed
    # ACK: every request took ~44 ms instead of ~1 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MlopsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "choose another --port, or --port 0 to let the system pick a free one.",
        ) from None
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    return sock


def serve(
    model_name: str,
    alias: str,
    *,
    host: str = DEFAULT_HOST,
    port: int = 0,
    fd: int | None = None,
    preload: threading.Thread | None = None,
) -> None:
    """Load the model, print ``serving models:/NAME@ALIAS (version N) on http://HOST:PORT``, serve until stopped.

    ``fd`` is a listening socket inherited from a parent process (see :mod:`scripts.mlops.server`):
    the parent bound it, so it knows the port before the server starts and no other process
    can take the port in between.
    """
    import uvicorn

    served = load_served(model_name, alias, preload=preload)
    app = create_app(model_name, alias, served=served)
    if fd is not None:
        sock = socket.socket(fileno=fd)
        host = sock.getsockname()[0]
    else:
        sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving models:/{model_name}@{alias} (version {served.version}) on http://{shown}:{bound}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def preload_loader() -> threading.Thread:
    """Import the model loader's heavy modules in the background while the registry is read.

    Loading a scikit-learn model imports skops, which imports every scikit-learn estimator
    (seconds). Part of that overlaps with opening the registry, which shortens start-up by
    about a quarter on a 2-core machine. Failures are ignored here: the real load reports them.
    """

    def work() -> None:
        try:
            import mlflow.sklearn  # noqa: F401
            import skops.io  # noqa: F401
        except Exception:  # noqa: BLE001 - the real load_model call raises a proper error
            pass

    thread = threading.Thread(target=work, name="preload-model-loader", daemon=True)
    thread.start()
    return thread
