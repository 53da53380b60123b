"""Benchmark notebook kernels forked from a warm interpreter against fresh ones (issue #16 item 1).

For each lab's reference solution in ``solutions/``, side by side in one run:

* **fresh**: the notebook executed end to end by nbclient in the stock ``python3`` kernel;
* **forked**: the same in ``python3-forked`` (:mod:`scripts.forkkernel`); its zygote is started
  once before the runs and its start-up (the imports a fresh kernel does itself) is reported on
  its own line;
* **floor**: a fresh kernel that has imported every module the lab's own run imports, and done
  nothing else: what any run of the lab pays before its first real cell. The modules are those a
  fresh kernel holds after running the whole lab and a bare kernel does not, imported in the
  order the lab imported them (a probe run per lab, untimed). The toolkit imports its libraries
  where it uses them, so a lab's setup cell can load MLflow, pandas and scikit-learn without
  naming them: Lab 05's ``open_workspace(...)`` and its drills do.
* **floor_setup**: the floor as earlier sessions measured it, a fresh kernel that has run only
  the ``import`` lines of the lab's first code cell. It misses what the toolkit imports lazily
  (Lab 05: 0.65 s, while its setup cell alone takes 2.6 s in a fresh kernel); it is reported
  beside the floor, with its ratio, so both can be compared.
* The floor in a forked kernel is reported as well.

Every run executes a copy of the notebook in its own temporary folder (the kernel's working
directory), as ``bench/run.py`` and :func:`scripts.grading.execute.run` do. Runs alternate
(fresh, forked) ``--repeats`` times; medians are reported. Targets: every lab forked within
2x its (fresh) floor; Lab 00 forked within 3 s. Prints a table and writes
``bench/results/kernels.json``::

    .venv/bin/python bench/bench_kernels.py [--repeats 1] [--labs 00 01]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _results
import nbformat
from jupyter_client.kernelspec import KernelSpecManager

from scripts.forkkernel import KERNEL_NAME, client
from scripts.grading.execute import run

REPO = Path(__file__).resolve().parents[1]
FRESH = "python3"
TARGET_VS_FLOOR = 2.0
TARGET_LAB00_S = 3.0


def setup_imports(path: Path) -> str:
    """The import statements of the notebook's first code cell (its setup cell), in order."""
    nb = nbformat.read(str(path), as_version=4)
    source = next(cell.source for cell in nb.cells if cell.cell_type == "code")
    tree = ast.parse(source)
    return "\n".join(ast.unparse(node) for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom))


def _timed_run(path: Path, kernel: str) -> float:
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / path.name
        shutil.copy(path, copy)
        start = time.perf_counter()
        run(copy, kernel_name=kernel)
        return time.perf_counter() - start


#: The probe cell appended to a notebook: the names of the modules the kernel holds, in import order.
PROBE = "import json as _json, sys as _sys\nprint(_json.dumps(list(_sys.modules)))"

#: The floor's one cell: import each module of NAMES in order (a module that cannot be imported on
#: its own, e.g. an alias another module put into sys.modules, is counted and skipped).
FLOOR_CELL = """import importlib
_failed = []
for _name in {names}:
    try:
        importlib.import_module(_name)
    except Exception:
        _failed.append(_name)
print(len(_failed))"""


def _printed(cell: nbformat.NotebookNode) -> str:
    """What a code cell printed (its stream outputs, in order)."""
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


def loaded_modules(path: Path | None) -> list[str]:
    """The modules a fresh kernel holds after running the notebook at ``path`` (``None``: a kernel
    that ran nothing), in the order they were imported."""
    with tempfile.TemporaryDirectory() as scratch:
        nb = nbformat.read(str(path), as_version=4) if path else nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell(PROBE))
        copy = Path(scratch) / (path.name if path else "bare.ipynb")
        nbformat.write(nb, copy)
        done = run(copy, kernel_name=FRESH)
    names: list[str] = json.loads(_printed(done.cells[-1]))
    return names


def floor_imports(lab: list[str], bare: list[str]) -> list[str]:
    """The modules of ``lab`` that ``bare`` does not hold, in ``lab``'s order."""
    held = set(bare)
    return [name for name in lab if name not in held]


def _floor(source: str, kernel: str) -> tuple[float, str]:
    """Seconds to run a one-cell notebook holding ``source``, and what the cell printed."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "floor.ipynb"
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
        start = time.perf_counter()
        done = run(path, kernel_name=kernel)
        seconds = time.perf_counter() - start
    return seconds, _printed(done.cells[0]).strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--labs", nargs="*", help="lab numbers (default: every solution)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # as `make` exports it (the zygote must be single-threaded)
    labs = sorted((REPO / "solutions").glob("[0-9][0-9]-*.ipynb"))
    if args.labs:
        labs = [lab for lab in labs if lab.name[:2] in args.labs]

    start = time.perf_counter()
    interpreter = client.interpreter_part(KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv)
    assert interpreter is not None, f"{KERNEL_NAME} does not run ipykernel_launcher"
    client.warm_up(interpreter, wait=True)
    zygote_s = time.perf_counter() - start

    bare = loaded_modules(None)
    rows: dict[str, dict[str, object]] = {}
    for lab in labs:
        imports = setup_imports(lab)
        modules = floor_imports(loaded_modules(lab), bare)
        cell = FLOOR_CELL.format(names=repr(modules))
        runs: dict[str, list[float]] = {"fresh": [], "forked": [], "floor": [], "floor_forked": [], "floor_setup": []}
        failed = ""
        for _ in range(args.repeats):
            seconds, failed = _floor(cell, FRESH)
            runs["floor"].append(seconds)
            runs["floor_forked"].append(_floor(cell, KERNEL_NAME)[0])
            runs["floor_setup"].append(_floor(imports, FRESH)[0])
            runs["fresh"].append(_timed_run(lab, FRESH))
            runs["forked"].append(_timed_run(lab, KERNEL_NAME))
        med = {key: statistics.median(values) for key, values in runs.items()}
        rows[lab.stem] = {
            **{f"{key}_s": round(value, 3) for key, value in med.items()},
            "runs_s": {key: [round(v, 3) for v in values] for key, values in runs.items()},
            "forked_vs_fresh": round(med["forked"] / med["fresh"], 3),
            "forked_vs_floor": round(med["forked"] / med["floor"], 3),
            "forked_vs_floor_setup": round(med["forked"] / med["floor_setup"], 3),
            "floor_modules": len(modules),
            "floor_modules_not_importable": int(failed or 0),
            "setup_imports": imports,
        }

    load = os.getloadavg()
    print(f"zygote ready in {zygote_s:.2f} s (once per process); load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    head = f"{'lab':34s}{'fresh':>8s}{'forked':>8s}{'floor':>8s}{'floor*':>8s}{'setup':>8s}{'fk/fr':>7s}{'fk/floor':>9s}{'fk/setup':>9s}"
    print(head)
    for name, row in rows.items():
        print(
            f"{name:34s}{row['fresh_s']:7.2f}s{row['forked_s']:7.2f}s{row['floor_s']:7.2f}s"
            f"{row['floor_forked_s']:7.2f}s{row['floor_setup_s']:7.2f}s{row['forked_vs_fresh']:7.2f}"
            f"{row['forked_vs_floor']:9.2f}{row['forked_vs_floor_setup']:9.2f}"
        )
    print(
        "floor: fresh kernel + every module the lab imports; floor*: the same, forked; setup: fresh kernel + only the"
        " import lines of the setup cell (the earlier floor); fk/floor, fk/setup: forked vs each"
    )
    met_floor = all(float(row["forked_vs_floor"]) <= TARGET_VS_FLOOR for row in rows.values())  # type: ignore[arg-type]
    lab00 = next((row for name, row in rows.items() if name.startswith("00-")), None)
    print(f"target forked <= {TARGET_VS_FLOOR:.0f}x floor: {'met' if met_floor else 'NOT met'}", end="")
    if lab00 is not None:
        ok = float(lab00["forked_s"]) <= TARGET_LAB00_S  # type: ignore[arg-type]
        print(f"; Lab 00 forked <= {TARGET_LAB00_S:.0f} s: {'met' if ok else 'NOT met'} ({lab00['forked_s']} s)")
    else:
        print()
    result = {
        **_results.machine(),
        "repeats": args.repeats,
        "zygote_ready_s": round(zygote_s, 3),
        "targets": {"forked_vs_floor_max": TARGET_VS_FLOOR, "lab00_forked_max_s": TARGET_LAB00_S},
        "labs": rows,
    }
    _results.save("kernels", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
