# Everything else is in pyproject.toml; setuptools reads C extensions only from here.
from setuptools import Extension, setup

setup(ext_modules=[Extension("routeiq.runtime._fastcall", ["host/runtime/_fastcall.c"], extra_compile_args=["-O2"])])
