"""Imported once by the kernel zygote before it forks kernels: what a lab kernel would import.

The kernel itself (ipykernel and what its app imports to start), then the libraries and
toolkit modules the labs' setup cells import, and the command modules of
:mod:`scripts.mlops._preload` (which also builds MLflow's map of installed distributions).
Nothing here may start a thread, open a store or read per-kernel state: the zygote checks it is
single-threaded before every fork. ``matplotlib_inline.backend_inline`` is deliberately *not*
imported: it hooks itself into the running IPython kernel when imported, so it must be imported
by the kernel (as a fresh kernel does on its first figure).
"""
# ruff: noqa: F401, I001 - imported for their side effect, in this order on purpose

# The kernel: what `python -m ipykernel_launcher` imports before it runs a cell.
import ipykernel.kernelapp
import ipykernel.ipkernel
import ipykernel.debugger  # debugpy and its vendored pydevd: imported by every kernel's init (0.2 s)
import ipykernel.zmqshell
import ipykernel.iostream
import ipykernel.comm
import IPython.core.interactiveshell
import IPython.core.completer
import jupyter_client.session
import zmq
import tornado.ioloop
import comm

# The labs' libraries and the toolkit (skops first: see scripts.mlops._preload).
from scripts.mlops import _preload as _commands
import matplotlib
import matplotlib.pyplot
import numpy
import pandas
import yaml
import scripts.grading.checks
import scripts.grading.derive
import scripts.grading.export
from scripts.mlops import audit, bundle, data, deploy, doctor, errors, evaluate, gate, incidents, inject, noise
from scripts.mlops import plots, procs, promotion, registry, release, server, train, workspace
from scripts.mlops.audit import catalogue

# What the labs' cells import on first use (measured: modules new in a forked kernel after Lab 00).
import git  # MLflow records the git commit of a run's source (GitPython runs `git --version` here)
import matplotlib.backends.backend_agg
import PIL.PngImagePlugin
import PIL.JpegImagePlugin
import PIL.GifImagePlugin
import PIL.BmpImagePlugin
import PIL.PpmImagePlugin
import PIL.features
import mlflow.models.display_utils
import mlflow.pyfunc.scoring_server
import mlflow.utils.git_utils
