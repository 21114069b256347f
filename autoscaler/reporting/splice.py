"""Put a generated Markdown section into a document between named markers.

The README's results are printed by the scripts in ``benchmarks/``; a script run with
``--readme`` also writes its section here, so no figure in the README is typed by hand and
re-running a script is how a figure is refreshed. A section is delimited by two HTML
comments, which Markdown renders as nothing::

    <!-- bench:replay_all:begin -->
    ...generated, replaced on every run...
    <!-- bench:replay_all:end -->

Everything outside the markers (the prose that explains the figures) is left as it is.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from autoscaler.errors import TraceError

_NAME = re.compile(r"^[a-z0-9_.-]+$")


def markers(name: str) -> tuple[str, str]:
    """The begin and end markers of section ``name`` (lower-case letters, digits, ``_.-``)."""
    if not _NAME.match(name):
        raise ValueError(f"section name {name!r}: use lower-case letters, digits, '_', '.', '-'")
    return f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"


def splice(text: str, name: str, body: str, *, source: str = "document") -> str:
    """``text`` with the lines between section ``name``'s markers replaced by ``body``.

    Raises ``TraceError`` naming ``source`` and the missing or repeated marker: a section that
    is absent, or present twice, is a mistake in the document, and guessing where to write
    would put figures under the wrong heading.
    """
    begin, end = markers(name)
    for marker in (begin, end):
        count = text.count(marker)
        if count != 1:
            raise TraceError(source, f"expected the marker {marker!r} once, found it {count} times")
    head, rest = text.split(begin, 1)
    inner, tail = rest.split(end, 1)
    del inner
    return f"{head}{begin}\n{body.strip(chr(10))}\n{end}{tail}"


def update_file(path: Path, name: str, body: str) -> None:
    """Splice ``body`` into the file at ``path`` and replace it atomically (a crash midway
    leaves the old file, never half of one)."""
    text = path.read_text(encoding="utf-8")
    new = splice(text, name, body, source=str(path))
    if new == text:
        return
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(new)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
