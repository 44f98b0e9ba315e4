"""The one Jinja environment factory: a user's template folder first, the packaged templates behind
it, so a user overrides a template file by file and can still reach the packaged one as
``{% extends "!default/name" %}``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import jinja2

PACKAGE_TEMPLATES = Path(__file__).parent / "templates"
REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def packaged_dir(subdir: str = "") -> Path:
    """The packaged templates (inside the wheel, or the repository's ``templates/`` in a checkout)."""
    for base in (PACKAGE_TEMPLATES, REPO_TEMPLATES):
        folder = base / subdir if subdir else base
        if folder.is_dir():
            return folder.resolve()
    raise FileNotFoundError(f"the packaged templates{'/' + subdir if subdir else ''} are missing")


def search_path(user_dirs: Sequence[Path], subdir: str = "") -> list[Path]:
    """The folders a template is looked up in, in order: the user's that exist, then the packaged one."""
    found = [d.resolve() for d in user_dirs if d.is_dir()]
    return list(dict.fromkeys([*found, packaged_dir(subdir)]))


class CompiledTemplates(jinja2.BytecodeCache):
    """Compiled templates, checked against their source: kept for the life of the process (``serve``'s
    rebuilds, a ``generate`` of many dates and the test suite's in-process runs make several
    environments over the same templates) and, given a ``folder``, on disk for the next process (a
    site build's workers, the next build)."""

    _memory: ClassVar[dict[str, bytes]] = {}  # shared by every environment of the process

    def __init__(self, folder: Path | None = None) -> None:
        self._disk = jinja2.FileSystemBytecodeCache(str(folder)) if folder else None
        if folder:
            folder.mkdir(parents=True, exist_ok=True)

    def get_bucket(
        self, environment: jinja2.Environment, name: str, filename: str | None, source: str
    ) -> jinja2.bccache.Bucket:
        """Keyed by what the compiled code depends on as well: the environments made here differ only
        in autoescaping (decided per template when it is compiled) and trailing newlines."""
        escape = environment.autoescape(name) if callable(environment.autoescape) else environment.autoescape
        keyed = f"{name}|{bool(escape)}|{environment.keep_trailing_newline}"
        return super().get_bucket(environment, keyed, filename, source)

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self._memory.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)
        elif self._disk:
            self._disk.load_bytecode(bucket)
            if bucket.code is not None:
                self._memory[bucket.key] = bucket.bytecode_to_string()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self._memory[bucket.key] = bucket.bytecode_to_string()
        if self._disk:
            self._disk.dump_bytecode(bucket)


def environment(
    user_dirs: Sequence[Path] = (),
    subdir: str = "",
    *,
    autoescape: bool | Callable[[str | None], bool] = False,
    keep_trailing_newline: bool = False,
    compiled: Path | None = None,
) -> jinja2.Environment:
    """An environment over ``search_path(user_dirs, subdir)``; undefined names are errors; compiled
    templates are kept for the process, and in the folder ``compiled`` if given."""
    dirs = search_path(user_dirs, subdir)
    loader = jinja2.ChoiceLoader(
        [
            jinja2.FileSystemLoader([str(d) for d in dirs]),
            jinja2.PrefixLoader({"!default": jinja2.FileSystemLoader(str(dirs[-1]))}, delimiter="/"),
        ]
    )
    return jinja2.Environment(
        loader=loader,
        autoescape=autoescape,
        keep_trailing_newline=keep_trailing_newline,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        bytecode_cache=CompiledTemplates(compiled),
    )
