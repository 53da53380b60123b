"""Notebook kernels forked from a warm interpreter (a *zygote*), behind a Jupyter kernel provisioner.

A fresh ``python -m ipykernel_launcher`` spends about half a second starting and, in these labs,
two more seconds importing MLflow, scikit-learn, pandas and the toolkit before the first cell
does anything. This package keeps one interpreter per parent process (the zygote,
:mod:`scripts.forkkernel.zygote`) that has imported all of that once, and forks every kernel from
it. The child then becomes ``python -m ipykernel_launcher -f <connection file>`` exactly as the
kernel manager asked: its environment, working directory, standard streams, own session and
process group, reseeded random generators.

How it is selected: the kernelspec ``python3-forked`` (installed by
``python -m scripts.forkkernel install --sys-prefix``) names the provisioner ``forked-kernel``
(:class:`scripts.forkkernel.provisioner.ForkingProvisioner`, registered under the
``jupyter_client.kernel_provisioners`` entry point). Anything that takes a kernel name uses it:
``NotebookClient(kernel_name="python3-forked")``, ``pytest --nbval-kernel-name python3-forked``,
``KernelManager(kernel_name="python3-forked")``.

Whenever a forked kernel could differ from a fresh one, the provisioner launches a fresh one
instead (the normal :class:`~jupyter_client.provisioning.LocalProvisioner` path): an environment
whose interpreter-start variables differ from the zygote's (a new zygote is started for them),
a command that is not ``ipykernel_launcher``, piped standard streams, ``independent=True``, a
zygote that is not single-threaded, or ``MLOPS_COLD=1``.
"""

from __future__ import annotations

PROVISIONER_NAME = "forked-kernel"
KERNEL_NAME = "python3-forked"
DISPLAY_NAME = "Python 3 (mlops labs, forked from a warm interpreter)"

__all__ = ["DISPLAY_NAME", "KERNEL_NAME", "PROVISIONER_NAME"]
