"""Markdown posts -> static HTML site: a paginated index, one HTML file per post, category listings, a
monthly archive, Atom feeds (site-wide and per category) and a static paper-level search index;
incremental by the build state kept outside the site folder. Per-paper pages (front matter with
``arxiv_id``, written by ``templates/paper.md.j2``) get their own HTML, class and tag listings with
Atom feeds (search shows a paper with a page as that page), but are not listed as daily posts.

Everything the site knows about a post's papers comes from the post's record (``postformat``: the
sidecar the pipeline writes, else the post's Markdown read in the reference format), never from the
HTML it renders. The modules, in the order a build uses them:

* ``sources``: the posts folder scanned; what listings need of each source, kept in the build state;
* ``markdown``: Markdown -> sanitised HTML as kramdown renders it, and the links in it;
* ``convert``: a source's record and body -> its HTML, its papers' anchors, a page's parts;
* ``work``: converting new and changed sources and writing their HTML, in worker processes;
* ``listings``, ``feeds``, ``search``: what lists the sources (search: each paper, for the index);
* ``manifest``, ``writer``, ``templates``: the build state (SQLite, with the conversion cache) and what
  is stale, writing it, rendering it;
* ``build``: the order of all that;
* ``seed``: a new build folder started from another site's last build (``serve``'s preview).
"""

from .build import build_site
from .options import BuildReport, SiteError, SiteOptions, state_folder
from .seed import copy_last_build
from .templates import template_dirs

__all__ = ["BuildReport", "SiteError", "SiteOptions", "build_site", "copy_last_build", "state_folder", "template_dirs"]
