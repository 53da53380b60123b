"""Serve one registry alias over HTTP: ``GET /health`` and ``POST /predict`` (FastAPI).

The server resolves ``models:/NAME@ALIAS`` to a version **once, at start**, and loads that
exact version (``models:/NAME/VERSION``), so what ``/health`` reports is what answers
``/predict``. Moving the alias later does not change a running server: restart it. A server
started by :mod:`scripts.mlops.server` is told the version, run and artifact folder by its parent
(which resolved the alias) and does not import MLflow at all.

A scikit-learn model saved with skops (what :mod:`scripts.mlops.train` logs) is loaded with skops
and the trusted types its ``MLmodel`` names, and predicts through its numpy path
(:mod:`scripts.mlops.fastpath`), which must give the pipeline's own labels on the whole frozen
evaluation set or the server refuses to start; a pipeline without one uses its own ``predict``.
Any other model goes through ``mlflow.pyfunc.load_model``. ``/health`` says which (``"loader"``).

Requests are validated once, against the model's signature, before the model sees them (pydantic):
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

import gc
import importlib.util
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import data, fastpath
from .errors import MlopsError, RegistryError

if TYPE_CHECKING:  # imported lazily: the CLI's --help should not pay for FastAPI or MLflow
    from fastapi import FastAPI

    from .model_files import Column

DEFAULT_HOST = "127.0.0.1"
MAX_RECORDS = 10_000
#: Largest magnitude accepted for a numeric feature. No churn feature is meaningful beyond
#: it, and values near the float limit (~1.8e308) overflow inside the scaler.
MAX_ABS_NUMBER = 1e12


#: How ``/predict`` computes, as ``/health`` reports it (``"loader"``).
LOADER_FAST = "skops+numpy"  # the skops-loaded pipeline's numbers, computed with numpy (verified at start)
LOADER_PIPELINE = "skops+sklearn"  # the skops-loaded pipeline's own predict
LOADER_PYFUNC = "mlflow.pyfunc"  # any other model: MLflow's pyfunc loader

Records = list[dict[str, Any]]


@dataclass(frozen=True)
class Resolved:
    """What ``models:/NAME@ALIAS`` resolved to, for a server that is told instead of asking MLflow."""

    version: int
    run_id: str
    model_dir: Path  # the local folder of the version's artifacts (the one holding ``MLmodel``)


@dataclass(frozen=True)
class ServedModel:
    """The model version a server loaded, how it was asked for, and how it predicts."""

    name: str
    alias: str
    version: int
    run_id: str
    model: Any  # a scikit-learn pipeline (skops) or an mlflow.pyfunc.PyFuncModel
    columns: "list[Column] | None"  # the signature's input columns (None: no signature)
    loader: str  # LOADER_FAST, LOADER_PIPELINE or LOADER_PYFUNC
    predict: Callable[[Records], list[Any]] = field(repr=False)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def _load_error(name: str, version: int, alias: str, exc: BaseException) -> RegistryError:
    return RegistryError(
        f"could not load models:/{name}/{version} (alias {alias!r}): {str(exc).splitlines()[0][:300]}",
        "check that the version's artifacts still exist (is the workspace the one it was trained in?).",
    )


def resolve(model_name: str, alias: str) -> Resolved:
    """Resolve ``model_name@alias`` with MLflow's registry (the current tracking and registry URIs)."""
    from . import registry

    registry.require_model(model_name)
    try:
        info = registry.version_for_alias(model_name, alias)
    except RegistryError as exc:
        raise RegistryError(
            f"cannot serve {model_name}@{alias}: {exc.problem}",
            f"point the alias at a version first: `{registry.promote_hint(model_name, alias)}`.",
        ) from None
    try:
        folder = local_model_dir(model_name, info.version)
    except Exception as exc:  # noqa: BLE001 - a missing run or artifact folder
        raise _load_error(model_name, info.version, alias, exc) from None
    return Resolved(info.version, info.run_id, folder)


def local_model_dir(model_name: str, version: int, client: Any = None) -> Path:
    """The local folder of a registered version's artifacts (MLflow's own answer; nothing is copied).

    For a local artifact store, ``mlflow.artifacts.download_artifacts`` returns the folder where
    the artifacts already are. A remote store would copy them to a temporary folder.
    """
    import mlflow
    from mlflow.artifacts import download_artifacts

    client = client or mlflow.MlflowClient()
    return Path(download_artifacts(artifact_uri=client.get_model_version_download_uri(model_name, str(version))))


def frozen_eval_features() -> Any:
    """The features of the frozen evaluation set, as :func:`scripts.mlops.data.load` reads them."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="serve-eval-") as scratch:
        paths = data.write_datasets(scratch, batches=("eval",))  # checks the pinned fingerprint
        return data.features(data.load(paths["eval"]))


def _predictor(model: Any, columns: list[str], *, fast: bool) -> tuple[str, Callable[[Records], list[Any]]]:
    """How to predict with a skops-loaded pipeline: its numpy path (verified here) or its own predict."""
    import numpy as np
    import pandas as pd

    def with_pipeline(records: Records) -> list[Any]:
        return list(np.asarray(model.predict(pd.DataFrame(records, columns=columns))).tolist())

    compiled = fastpath.compile_pipeline(model) if fast else "the fast path was turned off"
    if isinstance(compiled, str):
        return LOADER_PIPELINE, with_pipeline
    fastpath.verify(compiled, model, frozen_eval_features())  # FastPathMismatch: refuse to start
    limit = compiled.max_rows

    def with_numpy(records: Records) -> list[Any]:
        if limit is not None and len(records) > limit:
            return with_pipeline(records)
        return compiled.predict(records)

    return LOADER_FAST, with_numpy


def load_served(
    model_name: str,
    alias: str,
    *,
    resolved: Resolved | None = None,
    preload: threading.Thread | None = None,
    fast: bool = True,
) -> ServedModel:
    """Load exactly the version ``model_name@alias`` points at, and decide how to predict with it.

    ``resolved`` is the version, run and artifact folder that the parent process already
    resolved: then MLflow is not imported at all for a skops-saved scikit-learn model. Without
    it, the alias is resolved here with MLflow's registry. A skops-saved pipeline is loaded with
    skops and predicts with its numpy path (:mod:`scripts.mlops.fastpath`, checked on the frozen
    evaluation set; ``fast=False`` turns it off) or its own ``predict``; any other model is loaded
    with ``mlflow.pyfunc.load_model``. ``preload`` is a thread importing the loader's modules (see
    :func:`preload_loader`); it is joined before loading.
    """
    from .model_files import RestoreError, input_columns, load_skops_model, read_mlmodel, skops_flavor

    resolved = resolved or resolve(model_name, alias)
    if preload is not None:
        preload.join()
    version, run_id, folder = resolved.version, resolved.run_id, resolved.model_dir
    try:
        meta = read_mlmodel(folder)
        columns = input_columns(meta)
        flavor = skops_flavor(meta)
        if flavor is not None:
            model = load_skops_model(folder, flavor)
    except RestoreError as exc:
        raise _load_error(model_name, version, alias, exc) from None
    names = [c.name for c in columns] if columns else list(data.FEATURES)
    if flavor is not None:
        loader, predict = _predictor(model, names, fast=fast)
        return ServedModel(model_name, alias, version, run_id, model, columns, loader, predict)
    return _load_pyfunc(model_name, alias, resolved, columns, names)


def _load_pyfunc(model_name: str, alias: str, resolved: Resolved, columns: Any, names: list[str]) -> ServedModel:
    """A model that is not a skops-saved pipeline, loaded with ``mlflow.pyfunc.load_model``."""
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow.pyfunc.load_model(str(resolved.model_dir))
    except (MlflowException, OSError) as exc:
        raise _load_error(model_name, resolved.version, alias, exc) from None

    def predict(records: Records) -> list[Any]:
        predictions = model.predict(pd.DataFrame(records, columns=names))
        if isinstance(predictions, pd.DataFrame):
            return list(predictions.to_dict("records"))
        return list(np.asarray(predictions).tolist())

    return ServedModel(model_name, alias, resolved.version, resolved.run_id, model, columns, LOADER_PYFUNC, predict)


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


def record_model(columns: "list[Column] | None") -> Any:
    """A pydantic model for one input record, from the model's signature (else the churn schema)."""
    from pydantic import ConfigDict, create_model

    if not columns:  # no signature: fall back to the churn schema
        kinds = {name: "string" if name in data.CATEGORICAL else "double" for name in data.FEATURES}
        fields: dict[str, tuple[Any, Any]] = {name: (_field_type(name, kind), ...) for name, kind in kinds.items()}
    else:
        fields = {c.name: (_field_type(c.name, c.type), ... if c.required else None) for c in columns}
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
    from fastapi import FastAPI, Request  # noqa: F811
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field
    from starlette.exceptions import HTTPException as StarletteHTTPException

    served = served or load_served(model_name, alias)
    Record = record_model(served.columns)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        records: list[Record] = Field(min_length=1, max_length=MAX_RECORDS)  # type: ignore[valid-type]

    app = FastAPI(
        title=f"{served.name}@{served.alias}",
        description=f"Serves {served.uri} (alias {served.alias!r} at start-up).",
        version=str(served.version),
    )
    app.state.served = served  # what this app serves, for tests and tools that hold the app

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

    health_document = {
        "status": "ok",
        "model": served.name,
        "alias": served.alias,
        "version": served.version,
        "run_id": served.run_id,
        "model_uri": served.uri,
        "loader": served.loader,
    }

    # ``async def``: answered on the event loop, without a hop to the thread pool. The body is
    # validated once, by PredictRequest; the model gets the validated records as they are.
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return health_document

    @app.post("/predict", response_model=None)
    async def predict(body: PredictRequest) -> JSONResponse:
        rows = [record.model_dump() for record in body.records]  # type: ignore[attr-defined]
        try:
            with np.errstate(over="raise", invalid="raise"):
                predictions = served.predict(rows)
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
        # Plain JSON types already: rendered as FastAPI would, without its generic encoder pass.
        return JSONResponse(
            {
                "model": served.name,
                "alias": served.alias,
                "version": served.version,
                "run_id": served.run_id,
                "predictions": predictions,
            }
        )

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
    resolved: Resolved | None = None,
    preload: threading.Thread | None = None,
    fast: bool = True,
) -> None:
    """Load the model, print ``serving models:/NAME@ALIAS (version N) on http://HOST:PORT``, serve until stopped.

    ``fd`` is a listening socket inherited from a parent process (see :mod:`scripts.mlops.server`):
    the parent bound it, so it knows the port before the server starts and no other process
    can take the port in between. ``resolved``, ``preload`` and ``fast``: see :func:`load_served`.
    uvicorn runs on uvloop with the httptools parser when they are installed.
    """
    served = load_served(model_name, alias, resolved=resolved, preload=preload, fast=fast)
    import uvicorn

    app = create_app(model_name, alias, served=served)
    if fd is not None:
        sock = socket.socket(fileno=fd)
        host = sock.getsockname()[0]
    else:
        sock = listening_socket(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving models:/{model_name}@{alias} (version {served.version}) on http://{shown}:{bound}", flush=True)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        loop="uvloop" if _importable("uvloop") else "asyncio",
        http="httptools" if _importable("httptools") else "h11",
    )
    # Everything loaded so far lives as long as the server: keep the garbage collector from
    # scanning it again and again (a forked server inherits MLflow's and scikit-learn's objects).
    gc.collect()
    gc.freeze()
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


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
