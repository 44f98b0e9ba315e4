"""Listings: the paginated index, category listings, the archive, class and tag listings of the paper
pages, and their overviews."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from .manifest import PackedLinks, PaperLink, SourceInfo

if TYPE_CHECKING:
    from .writer import Writer


@dataclass(frozen=True)
class Pagination:
    """Links of a listing. Beyond the first, listings are fixed chunks counted from the oldest item:
    adding a post rewrites the first listing and at most two others, and ``page/7.html`` keeps
    showing the same posts (the URL says "page": it is what readers expect). So listings are labelled
    by their dates, not "3 of 9"."""

    label: str
    newer: str | None
    older: str | None


@dataclass(frozen=True)
class Category:
    name: str
    slug: str
    posts: int
    papers: int

    @property
    def url(self) -> str:
        return f"categories/{self.slug}/index.html"

    @property
    def feed_url(self) -> str:
        return f"categories/{self.slug}/feed.xml"


@dataclass(frozen=True)
class Month:
    """A month of the archive's overview: it shows the counts and links the month's own listing (a
    list of every post would make adding a post re-render a page that grows with the site)."""

    name: str  # YYYY-MM
    posts: int
    papers: int


TopicKind = Literal["classes", "tags"]


@dataclass(frozen=True)
class Topic:
    """A class of the paper taxonomy (``kind`` "classes") or a tag ("tags"), from the paper pages."""

    kind: TopicKind
    name: str
    slug: str
    papers: int

    @property
    def label(self) -> str:
        return "类别" if self.kind == "classes" else "标签"

    @property
    def url(self) -> str:
        return f"{self.kind}/{self.slug}/index.html"

    @property
    def feed_url(self) -> str:
        return f"{self.kind}/{self.slug}/feed.xml"


CategoryPosts = list[tuple[SourceInfo, tuple[int, ...]]]  # newest first, each with the indexes of its papers of it


def category_slug(name: str) -> str:
    """A file-name-safe slug (letters of any script stay, so 语音处理 keeps its name); names that
    needed changing get a hash suffix, so slugs never collide."""
    slug = re.sub(r"[^\w.-]+", "-", name).strip(".-") or "c"
    return slug if slug == name else f"{slug}-{hashlib.blake2b(name.encode(), digest_size=3).hexdigest()}"


def chunks(
    items: Sequence[Any],
    per_listing: int,
    path_of: Callable[[int], str],
    day_of: Callable[[Any], date],
    kept: Callable[[int, str], bool],
) -> Iterator[tuple[str, Sequence[Any], Pagination]]:
    """Listings of newest-first ``items``, each with its path: the newest ``per_listing`` at
    ``path_of(0)``, then chunk k at ``path_of(k)``, chunk 1 being the oldest. The newest chunk is
    never a listing of its own: all of it is on the first. An older chunk for which ``kept(k,
    path)`` holds is passed over without being cut or labelled."""
    count = len(items)
    older_chunks = -(-count // per_listing) - 1

    def label(chunk: Sequence[Any]) -> str:
        if not chunk:
            return ""
        oldest, newest = day_of(chunk[-1]), day_of(chunk[0])
        return f"{oldest} — {newest}" if oldest != newest else str(newest)

    first = items[:per_listing]
    yield path_of(0), first, Pagination(label(first), None, path_of(older_chunks) if older_chunks else None)
    for k in range(older_chunks, 0, -1):
        rel = path_of(k)
        if kept(k, rel):
            continue
        chunk = items[count - k * per_listing : count - (k - 1) * per_listing]
        newer = path_of(k + 1) if k < older_chunks else path_of(0)
        yield rel, chunk, Pagination(label(chunk), newer, path_of(k - 1) if k > 1 else None)


Order = tuple[date, str]  # a source's place in a listing: its date, then its name (newest first)


def order(info: SourceInfo) -> Order:
    return info.date, info.source


def settled_count(items: Sequence[Any], settled: Order | None) -> int:
    """How many of newest-first ``items`` (sources, or posts with paper indexes) come before
    ``settled`` in order: they, and their order, are as the last build left them. None: nothing is."""
    if settled is None:
        return 0
    low, high = 0, len(items)  # the first item before ``settled``: a binary search of the order
    while low < high:
        middle = (low + high) // 2
        item = items[middle]
        if order(item if isinstance(item, SourceInfo) else item[0]) < settled:
            high = middle
        else:
            low = middle + 1
    return len(items) - low


def ref(info: SourceInfo | None) -> str:
    """What a listing shows of a source changes only with its file and content (which also decide
    its papers' anchors and categories); "-" for none."""
    return f"{info.source}\x1e{info.digest}" if info else "-"


def _index_path(number: int) -> str:
    return "index.html" if number == 0 else f"page/{number}.html"


def _category_path(slug: str, number: int) -> str:
    return f"categories/{slug}/index.html" if number == 0 else f"categories/{slug}/{number}.html"


def _topic_path(kind: str, slug: str, number: int) -> str:
    return f"{kind}/{slug}/index.html" if number == 0 else f"{kind}/{slug}/{number}.html"


def paginate(
    writer: Writer,
    items: Sequence[Any],
    per_listing: int,
    path_of: Callable[[int], str],
    template: str,
    day_of: Callable[[Any], date],
    first_key: list[str],
    settled: Order | None,
    **extra: Any,
) -> None:
    """A listing and its older chunks; ``first_key`` is what only the first one shows (a category's
    totals), so that older chunks stay untouched when it changes. An item is a source, or a post
    with the indexes of its papers in the listing's category, which its content decides; a chunk
    that is written gets each such post with those papers (decoded only when it is rendered). Chunks of
    items before ``settled`` are kept without being keyed, so adding a post costs the same however
    many chunks the site has."""
    per_listing = max(1, per_listing)
    # chunk k shows what it showed last time when it and chunk k + 1 (its "newer" link) are settled
    settled_items = settled_count(items, settled)

    def kept(number: int, rel: str) -> bool:
        return (number + 1) * per_listing < settled_items and writer.unchanged(rel)

    for rel, chunk, pagination in chunks(items, per_listing, path_of, day_of, kept):
        refs = [ref(item) if isinstance(item, SourceInfo) else ref(item[0]) for item in chunk]
        links = [pagination.label, pagination.newer or "-", pagination.older or "-"]
        key = [*refs, *links, *(first_key if pagination.newer is None else ())]
        if writer.stale(rel, writer.key(template, *key)):
            writer.queue(rel, template, partial(_chunk_context, chunk, pagination, extra))


def _chunk_context(chunk: Sequence[Any], pagination: Pagination, extra: dict[str, Any]) -> dict[str, Any]:
    shown = [item if isinstance(item, SourceInfo) else _with_papers(*item) for item in chunk]
    return {"items": shown, "pagination": pagination, **extra}


def _with_papers(post: SourceInfo, indexes: tuple[int, ...]) -> tuple[SourceInfo, tuple[PaperLink, ...]]:
    if isinstance(post.papers, PackedLinks):
        return post, post.papers.select(indexes)
    return post, tuple(post.papers[i] for i in indexes)


def write_post_listings(
    writer: Writer, posts: list[SourceInfo], per_listing: int, settled: Order | None
) -> dict[Category, CategoryPosts]:
    """The index, the category listings and their overview, the archive and the search form; returns
    each category with its posts. Posts before ``settled`` are as the last build left them."""
    paginate(writer, posts, per_listing, _index_path, "index.html", lambda p: p.date, [], settled, head_title=None)

    by_category: dict[str, CategoryPosts] = {}
    papers: dict[str, int] = {}
    for post in posts:
        for name, indexes in post.groups:
            by_category.setdefault(name, []).append((post, indexes))
            papers[name] = papers.get(name, 0) + len(indexes)
    categories = sorted(
        (Category(n, category_slug(n), len(e), papers[n]) for n, e in by_category.items()),
        key=lambda c: (-c.papers, c.name),
    )
    summary = [f"{c.name}\x1e{c.posts}\x1e{c.papers}" for c in categories]
    writer.render("categories/index.html", summary, "categories.html", categories=categories, head_title="分类")
    for category in categories:
        paginate(
            writer,
            by_category[category.name],
            per_listing,
            partial(_category_path, category.slug),
            "category.html",
            lambda entry: entry[0].date,
            [str(category.posts), str(category.papers)],
            settled,
            category=category,
            head_title=category.name,
        )

    months: dict[str, list[SourceInfo]] = {}
    for post in posts:
        months.setdefault(post.month, []).append(post)
    counted = [Month(name, len(found), sum(len(p.papers) for p in found)) for name, found in months.items()]
    years: dict[str, list[Month]] = {}
    for month in counted:
        years.setdefault(month.name[:4], []).append(month)
    summary = [f"{m.name}\x1e{m.posts}\x1e{m.papers}" for m in counted]
    overview = {"years": list(years.items()), "month": None, "head_title": "归档"}
    writer.render("archive/index.html", summary, "archive.html", **overview)
    settled_month = f"{settled[0]:%Y-%m}" if settled else ""
    for name, month_posts in months.items():
        if name < settled_month and writer.unchanged(f"archive/{name}.html"):
            continue  # every post it shows, or showed, is settled
        writer.render(
            f"archive/{name}.html",
            [ref(p) for p in month_posts],
            "archive.html",
            posts=month_posts,
            month=name,
            head_title=f"{name} 归档",
        )
    writer.render("search.html", [], "search.html", head_title="搜索")
    return {category: by_category[category.name] for category in categories}


def write_topic_listings(
    writer: Writer, pages: list[SourceInfo], per_listing: int, settled: Order | None
) -> list[tuple[Topic, list[SourceInfo]]]:
    """A listing per class and per tag of its paper pages (newest first, paginated like the index),
    and an overview of both at ``classes/`` and ``tags/``; returns each topic with its pages. A
    listing shows only what the paper page's source holds, so it changes only when one of its pages
    does; pages before ``settled`` are as the last build left them."""
    topics: list[tuple[Topic, list[SourceInfo]]] = []
    kinds: tuple[tuple[TopicKind, Callable[[SourceInfo], tuple[str, ...]]], ...] = (
        ("classes", lambda p: p.classes),
        ("tags", lambda p: p.tags),
    )
    for kind, names_of in kinds:
        members: dict[str, list[SourceInfo]] = {}
        for page in pages:
            for name in names_of(page):
                members.setdefault(name, []).append(page)
        found = sorted(
            (Topic(kind, n, category_slug(n), len(m)) for n, m in members.items()),
            key=lambda t: (-t.papers, t.name),
        )
        topics += [(topic, members[topic.name]) for topic in found]
    if not pages:
        return topics
    classes = [t for t, _ in topics if t.kind == "classes"]
    tags = [t for t, _ in topics if t.kind == "tags"]
    summary = [f"{t.kind}\x1e{t.name}\x1e{t.papers}" for t, _ in topics]
    for kind in ("classes", "tags"):  # the same overview at both, so neither folder is a dead end
        writer.render(f"{kind}/index.html", summary, "topics.html", classes=classes, tags=tags, head_title="类别与标签")
    for topic, members_of_topic in topics:
        paginate(
            writer,
            members_of_topic,
            per_listing,
            partial(_topic_path, topic.kind, topic.slug),
            "topic.html",
            lambda page: page.date,
            [str(topic.papers)],
            settled,
            topic=topic,
            head_title=f"{topic.label}：{topic.name}",
        )
    return topics
