"""The daily post and the per-paper page as data: the one owner of their structure.

The pipeline renders a post with ``templates/post.md.j2`` and writes beside it its *record*, a
small JSON sidecar (``posts/.2026-01-15-arxiv.md.json`` beside ``posts/2026-01-15-arxiv.md``;
Jekyll and the site's source scan skip dot-files) that says what the post holds: each paper's id,
title, authors, categories, links and texts. Whatever needs a post's structure (the rewrite guard,
the site's category pages, counts, search and feeds) reads the record, never the rendered text or
HTML, so a user's own ``post.md.j2`` (other labels, another order, extra lines) changes nothing for
them. The sidecar carries the sha256 of the text it
describes and is written first: a crash before the post is written leaves a sidecar that does not
match, which is ignored.

A post without a matching sidecar (written by the seed system, by hand, or edited since) is read by
its Markdown: the front matter, then a CommonMark event stream in the reference format (``##``
headings start papers, the metadata list is read by its keys, the paragraphs after it are the
translation, or the English abstract and the pending line, and ``<details>`` holds the explainer).
The format's labels are defined here and handed to the packaged templates as the global ``LABEL``,
so the template and this reader cannot drift apart.

Text fields hold Markdown as kramdown reads it from the post (the template's escaping applied,
Jekyll's Liquid pass done), so whatever shows a field shows what the post shows.

Modules: ``records`` (the records and the labels, built from the pipeline's models), ``jekyll``
(front matter, Liquid ``raw``, dates), ``reader`` (the Markdown reader), ``files`` (sidecars,
reading a file back, the rewrite guard).
"""

from .files import Document, better_on_disk, read, read_record, sidecar_name, sidecar_path, write
from .jekyll import (
    XML_INVALID,
    PostFormatError,
    apply_liquid_raw,
    decode,
    document_date,
    front_matter,
    names,
    page_id,
)
from .reader import parse_page, parse_post
from .records import (
    LABEL,
    PENDING_LINE,
    TEMPLATE_GLOBALS,
    UNAVAILABLE_LINE,
    Labels,
    PageRecord,
    PaperRecord,
    PostRecord,
    Record,
    page_record,
    post_record,
)

__all__ = [
    "LABEL",
    "PENDING_LINE",
    "TEMPLATE_GLOBALS",
    "UNAVAILABLE_LINE",
    "XML_INVALID",
    "Document",
    "Labels",
    "PageRecord",
    "PaperRecord",
    "PostFormatError",
    "PostRecord",
    "Record",
    "apply_liquid_raw",
    "better_on_disk",
    "decode",
    "document_date",
    "front_matter",
    "names",
    "page_id",
    "page_record",
    "parse_page",
    "parse_post",
    "post_record",
    "read",
    "read_record",
    "sidecar_name",
    "sidecar_path",
    "write",
]
