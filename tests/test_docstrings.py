"""Every public function and class of ``nqs`` and ``hamiltonians`` has a docstring.

Public: a name not starting with ``_``, defined in the module that is being checked (re-exports
are checked where they are defined). Methods and properties of public classes count too, except
dunder methods and members inherited from elsewhere. The API pages of the documentation site are
generated from these docstrings.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

PACKAGES = ("nqs", "hamiltonians")


def all_modules() -> list[str]:
    """Dotted names of every module of the two packages (packages included)."""
    names = []
    for package in PACKAGES:
        pkg = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=package + "."):
            names.append(info.name)
    return sorted(names)


def _has_doc(obj: object) -> bool:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return bool(doc and doc.strip())


def _is_dataclass_default_doc(cls: type) -> bool:
    # dataclasses write "Name(field, ...)" as the docstring when none is given
    doc = cls.__dict__.get("__doc__") or ""
    return doc.startswith(f"{cls.__name__}(")


def missing_docstrings(module_name: str) -> list[str]:
    """Public functions, classes, methods and properties defined in the module without a docstring."""
    module = importlib.import_module(module_name)
    missing = []
    if not _has_doc(module):
        missing.append(f"{module_name} (module)")
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module_name:
            continue
        if inspect.isfunction(obj):
            if not _has_doc(obj):
                missing.append(f"{module_name}.{name}")
        elif inspect.isclass(obj):
            if not _has_doc(obj) or _is_dataclass_default_doc(obj):
                missing.append(f"{module_name}.{name}")
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                if isinstance(member, staticmethod | classmethod):
                    target = member.__func__
                if not inspect.isfunction(target):
                    continue
                if target.__qualname__.split(".")[0] != obj.__name__:
                    continue  # assigned from elsewhere, documented there
                if not _has_doc(target):
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


def test_modules_are_found():
    names = all_modules()
    assert "nqs.driver" in names and "hamiltonians.spin" in names and "nqs.models.rbm" in names


def test_the_check_finds_a_missing_docstring(tmp_path, monkeypatch):
    # the check itself must be able to fail: a throwaway module with one undocumented function
    (tmp_path / "nqs_doc_probe.py").write_text(
        '"""Probe."""\n\n\ndef documented():\n    """Yes."""\n\n\ndef bare():\n    pass\n\n\n'
        "class Box:\n    \"\"\"Box.\"\"\"\n\n    def open(self):\n        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert missing_docstrings("nqs_doc_probe") == ["nqs_doc_probe.bare", "nqs_doc_probe.Box.open"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_function_and_class_has_a_docstring(package):
    missing = [m for name in all_modules() if name.split(".")[0] == package
               for m in missing_docstrings(name)]
    assert not missing, "public names without a docstring:\n  " + "\n  ".join(missing)
