"""Install the ``python3-forked`` kernelspec: ipykernel's own, plus the forking provisioner."""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

from ipykernel.kernelspec import get_kernel_dict, write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager

from . import DISPLAY_NAME, KERNEL_NAME, PROVISIONER_NAME


def kernel_dict(python_arguments: list[str] | None = None) -> dict[str, object]:
    """``kernel.json`` of the forked kernel: the stock Python one, with the provisioner named."""
    spec = get_kernel_dict(python_arguments=python_arguments)
    metadata = dict(spec.get("metadata") or {})
    metadata["kernel_provisioner"] = {"provisioner_name": PROVISIONER_NAME}
    spec.update(display_name=DISPLAY_NAME, metadata=metadata)
    return spec


def install(*, user: bool = False, prefix: str | None = None, name: str = KERNEL_NAME) -> str:
    """Install the kernelspec (like ``python -m ipykernel install``); returns where it went."""
    with tempfile.TemporaryDirectory() as scratch:
        # The interpreter options `python -m ipykernel install` gives the stock spec on CPython.
        python_arguments = ["-Xfrozen_modules=off"] if platform.python_implementation() == "CPython" else []
        path = write_kernel_spec(Path(scratch) / name, overrides=kernel_dict(python_arguments))
        return KernelSpecManager().install_kernel_spec(path, kernel_name=name, user=user, prefix=prefix)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.forkkernel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    inst = sub.add_parser("install", help="install the python3-forked kernelspec")
    where = inst.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="into the user's Jupyter folder")
    where.add_argument("--sys-prefix", action="store_true", help=f"into this environment ({sys.prefix})")
    where.add_argument("--prefix", help="under this prefix")
    inst.add_argument("--name", default=KERNEL_NAME)
    args = parser.parse_args(argv)
    prefix = sys.prefix if args.sys_prefix else args.prefix
    print(install(user=args.user, prefix=prefix, name=args.name))
    return 0
