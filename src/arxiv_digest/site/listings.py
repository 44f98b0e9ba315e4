"""Listings: the paginated index, category listings, the archive, class and tag listings of the paper
pages, and their overviews."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from .manifest import BuildState, Order, PackedLinks, PaperLink, SourceInfo, order

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


CategoryPost = tuple[SourceInfo, tuple[int, ...]]  # a post with the indexes of its papers of a category
CategoryPosts = Sequence[CategoryPost]  # newest first


class SettledCategory(Sequence[CategoryPost]):
    """A category's posts as an incremental build sees them: those from ``settled`` on as this build
    found them, then the older ones as the build state keeps them (``BuildState.members``), read
    when first needed: the newest ``prefetch`` of them for its first listings, all of them only
    for an older chunk that must be written again (its file is gone) or a feed that reaches that
    far. Grouping every post by category took a seventh of adding a post to 10,000."""

    def __init__(
        self,
        name: str,
        newer: list[CategoryPost],
        settled: Order,
        older: int,
        state: BuildState,
        sources: dict[str, SourceInfo],
        prefetch: int,
    ) -> None:
        self.name, self._settled, self._state, self._sources = name, settled, state, sources
        self.older = older  # how many come before ``settled``
        self._items, self._newer = newer, newer
        self._prefetch, self._complete = prefetch, not older

    def _read(self, limit: int) -> None:
        """The newer posts and the newest ``limit`` older ones (-1: all)."""
        found = self._state.members(self.name, self._settled, limit)
        self._items = self._newer + [(self._sources[s], _indexes(self._sources[s], self.name)) for s in found]
        self._complete = len(found) == self.older

    def _reach(self, stop: int) -> None:
        if stop > len(self._items) and not self._complete:
            first = self._items is self._newer and stop - len(self._newer) <= self._prefetch
            self._read(self._prefetch if first else -1)

    def __len__(self) -> int:
        return len(self._newer) + self.older

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            _, stop, step = index.indices(len(self))
            self._reach(len(self) if step < 0 else stop)
        else:
            self._reach(len(self) if index < 0 else index + 1)
        return self._items[index]

    def __iter__(self) -> Iterator[CategoryPost]:
        self._reach(len(self._newer) + 1)
        shown = self._items  # (reading more makes a new list)
        yield from shown
        if not self._complete:
            self._read(-1)
            yield from self._items[len(shown) :]


def _indexes(post: SourceInfo, category: str) -> tuple[int, ...]:
    return next(indexes for name, indexes in post.groups if name == category)


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
    older_chunks = _older_chunks(count, per_listing)

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


def _older_chunks(count: int, per_listing: int) -> int:
    """How many listings a list of ``count`` items has besides its first."""
    return max(0, -(-count // max(1, per_listing)) - 1)


def settled_count(items: Sequence[Any], settled: Order | None) -> int:
    """How many of newest-first ``items`` (sources, or posts with paper indexes) come before
    ``settled`` in order: they, and their order, are as the last build left them. None: nothing is."""
    if settled is None:
        return 0
    if isinstance(items, SettledCategory):
        return items.older  # (known without reading them)
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


def _by_category(posts: Sequence[SourceInfo]) -> tuple[dict[str, list[CategoryPost]], dict[str, int]]:
    """Each category's posts (newest first, with the indexes of their papers of it) and papers."""
    by_category: dict[str, list[CategoryPost]] = {}
    papers: dict[str, int] = {}
    for post in posts:
        for name, indexes in post.groups:
            by_category.setdefault(name, []).append((post, indexes))
            papers[name] = papers.get(name, 0) + len(indexes)
    return by_category, papers


def _settled_by_category(
    posts: list[SourceInfo], per_listing: int, settled: Order, state: BuildState, sources: dict[str, SourceInfo]
) -> tuple[dict[str, CategoryPosts], dict[str, int], set[str]]:
    """``_by_category`` for an incremental build: the posts from ``settled`` on grouped here, the
    older ones counted by the build state and read from it as the listings and feeds need them;
    and the categories that had or have posts from ``settled`` on (the others are as they were)."""
    newer, papers = _by_category(posts[: len(posts) - settled_count(posts, settled)])
    by_category: dict[str, CategoryPosts] = {}
    totals = state.member_totals(settled)
    touched = set(newer)
    for name in newer.keys() | totals.keys():
        older, older_papers, later = totals.get(name, (0, 0, 0))
        if later:  # the last build had posts of it from ``settled`` on: changed or gone since
            touched.add(name)
        if older or name in newer:
            found = newer.get(name, [])
            by_category[name] = SettledCategory(name, found, settled, older, state, sources, 2 * per_listing)
            papers[name] = papers.get(name, 0) + older_papers
    return by_category, papers, touched


def write_post_listings(
    writer: Writer,
    posts: list[SourceInfo],
    per_listing: int,
    settled: Order | None,
    state: BuildState,
    sources: dict[str, SourceInfo],
) -> dict[Category, CategoryPosts]:
    """The index, the category listings and their overview and the archive; returns
    each category with its posts, for its feed. Posts before ``settled`` are as the last build left
    them (and ``state`` keeps them by category): a category none of whose posts is newer is left as
    it is, listings and feed, without being keyed or returned. ``sources``: every source by name."""
    paginate(writer, posts, per_listing, _index_path, "index.html", lambda p: p.date, [], settled, head_title=None)

    by_category: Mapping[str, CategoryPosts]
    if settled is None:
        by_category, papers = _by_category(posts)
        touched = set(by_category)
    else:
        by_category, papers, touched = _settled_by_category(posts, max(1, per_listing), settled, state, sources)
    categories = sorted(
        (Category(n, category_slug(n), len(e), papers[n]) for n, e in by_category.items()),
        key=lambda c: (-c.papers, c.name),
    )
    summary = [f"{c.name}\x1e{c.posts}\x1e{c.papers}" for c in categories]
    writer.render("categories/index.html", summary, "categories.html", categories=categories, head_title="分类")
    kept: set[Category] = set()  # untouched categories whose listings and feed are all there
    for category in categories:
        if category.name not in touched:
            count, path_of = category.posts, partial(_category_path, category.slug)
            outputs = [path_of(k) for k in range(_older_chunks(count, per_listing) + 1)]
            if writer.all_unchanged([*outputs, category.feed_url]):
                kept.add(category)
                continue
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
    return {category: by_category[category.name] for category in categories if category not in kept}


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
