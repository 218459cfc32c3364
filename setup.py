# Why this file exists: friendli_image.py stays one module you can vendor by copying
# it, but PEP 561 lets only a package carry the py.typed marker that tells type
# checkers to trust its annotations.  So, at build time only, build_py lays the same
# file out in the wheel as friendli_image/__init__.py, next to an empty py.typed and
# a tiny __main__.py (for `python -m friendli_image`).  Nothing is kept twice in the
# source tree.  All metadata lives in setup.cfg.
import os

from setuptools import setup
from setuptools.command.build_py import build_py

# Written next to __init__.py in the wheel: an empty PEP 561 marker, and `python -m friendli_image`.
EXTRA = {
    "py.typed": "",
    "__main__.py": "import sys\nfrom friendli_image import main\n\nif __name__ == '__main__':\n    sys.exit(main())\n",
}


class build_py_as_package(build_py):
    def _as_package(self):  # editable installs keep the plain module
        return not getattr(self, "editable_mode", False)

    def get_module_outfile(self, build_dir, package, module):
        if module == "friendli_image" and not any(package) and self._as_package():
            return os.path.join(build_dir, "friendli_image", "__init__.py")
        return super().get_module_outfile(build_dir, package, module)

    def run(self):
        super().run()
        if self._as_package():
            for name, text in EXTRA.items():
                with open(os.path.join(self.build_lib, "friendli_image", name), "w") as f:
                    f.write(text)

    def get_outputs(self, include_bytecode=True):
        extra = [os.path.join(self.build_lib, "friendli_image", name) for name in EXTRA] if self._as_package() else []
        return super().get_outputs(include_bytecode) + extra


setup(cmdclass={"build_py": build_py_as_package})
