"""Installs the PyTorch adapter of lrp-oracle: `pip install ./tools/python`.

setup.py rather than pyproject.toml on purpose: pip then builds with the
setuptools already installed (Debian's python3-setuptools, visible in a venv
made with --system-site-packages) and needs no network.  The lrp-oracle
binary itself is built with `make`; point $LRP_ORACLE (or cli=) at it.
numpy, h5py and torch are Debian packages (python3-numpy, python3-h5py,
python3-torch), not declared here, so pip never tries to fetch them.
"""
from setuptools import setup

setup(
    name="lrp-oracle-torch",
    version="0.1",
    description="PyTorch adapter of lrp-oracle: fixtures, relevance capture, peer validation",
    py_modules=["lrp_torch", "lrp_peers"],
    python_requires=">=3.9",
)
