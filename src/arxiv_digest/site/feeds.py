"""Atom feeds with full content: the latest daily posts site-wide, the latest papers of each category
(each rendered from its record), and the latest paper pages of each class and tag."""

from __future__ import annotations

from datetime import date
from typing import NamedTuple

from ..postformat import XML_INVALID, PaperRecord
from .convert import Library, PaperTexts
from .listings import Category, CategoryPosts, Topic, ref
from .manifest import PaperLink, SourceInfo
from .templates import compile_template
from .writer import Writer

FEED_POSTS = 10
MACROS = "_macros.html"  # the entries of category and topic feeds are its macros
CATEGORY_FEED_PAPERS = 20
# category feeds whose papers are read and rendered together: a full build's, all at once, took the
# building process from 90 to 154 MB at 3,000 posts (every shown paper's texts, converted and kept)
FEEDS_AT_ONCE = 16


class FeedEntry(NamedTuple):
    """An entry as ``feed.xml`` shows it (a named tuple: category feeds keep theirs in the build state)."""

    title: str
    url: str
    id: str
    updated: str
    content: str
    categories: tuple[str, ...]


def _xml(text: str) -> str:
    """Text an XML reader takes (a record holds what arXiv and the model wrote)."""
    return XML_INVALID.sub("", text)


def _stamp(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


class Feeds:
    """Writes the feeds that are stale; ``library`` supplies what they show."""

    def __init__(self, writer: Writer, library: Library, site_title: str) -> None:
        self.writer = writer
        self.library = library
        self.site_title = site_title
        self._page_entries: dict[str, str] = {}
        self._macros = compile_template(writer.env, MACROS).module

    def site(self, posts: list[SourceInfo]) -> None:
        """The latest posts, each with its whole converted body."""
        latest = posts[:FEED_POSTS]
        if not self.writer.stale("feed.xml", self.writer.key("feed.xml", *map(ref, latest))):
            return
        entries = [
            self._entry(
                p.title, p.url, p.date, self.writer.absolute_links(self.library.content(p), p.url), p.categories
            )
            for p in latest
        ]
        self._write("feed.xml", self.site_title, "index.html", entries)

    def categories(self, categories: dict[Category, CategoryPosts]) -> None:
        """The latest papers of each category, each from its record: facts, links, translation (or the
        English abstract while it is pending) and explainer. An entry that the last feed of a stale
        category had (the same paper of the same post, rendered on the same ``basis``) is taken from
        it; each post is read once for all the other papers of it that stale feeds show."""
        stale: list[tuple[Category, list[tuple[SourceInfo, int, str]]]] = []  # (post, index, its "shown")
        for category, posts in categories.items():
            papers: list[tuple[SourceInfo, int, str]] = []
            for post, matching in posts:
                papers += [(post, n, f"{ref(post)}#{n}") for n in matching]
                if len(papers) >= CATEGORY_FEED_PAPERS:
                    break
            del papers[CATEGORY_FEED_PAPERS:]
            key = self.writer.key("feed.xml", category.name, *(shown for _, _, shown in papers), loads=(MACROS,))
            if self.writer.stale(category.feed_url, key):
                stale.append((category, papers))
        basis = self.writer.key(MACROS)  # what an entry is rendered with besides its paper
        entries: dict[str, FeedEntry] = {}  # by "shown", for every feed (categories share papers)
        for start in range(0, len(stale), FEEDS_AT_ONCE):
            self._category_feeds(stale[start : start + FEEDS_AT_ONCE], basis, entries)

    def _category_feeds(
        self, stale: list[tuple[Category, list[tuple[SourceInfo, int, str]]]], basis: str, entries: dict[str, FeedEntry]
    ) -> None:
        """Some of the stale category feeds, written, with their entries kept (and added to ``entries``)."""
        kept = self.library.feed_entries([category.name for category, _ in stale], basis)
        entries.update((shown, FeedEntry(*fields)) for found in kept.values() for shown, fields in found)
        wanted: dict[str, tuple[SourceInfo, set[int]]] = {}
        for _, papers in stale:
            for post, index, shown in papers:
                if shown not in entries:
                    wanted.setdefault(post.source, (post, set()))[1].add(index)
        by_source = {source: post for source, (post, _) in wanted.items()}
        links = {source: tuple(post.papers) for source, post in by_source.items()}  # (each decoded once)
        for (source, index), (paper, texts) in self.library.papers(list(wanted.values())).items():
            post = by_source[source]
            entries[f"{ref(post)}#{index}"] = self._paper_entry(post, links[source][index], paper, texts)
        for category, papers in stale:
            found = [entries[shown] for _, _, shown in papers]
            self._write(category.feed_url, f"{self.site_title} · {category.name}", category.url, found)
            self.library.keep_feed(category.name, basis, [(shown, tuple(entries[shown])) for _, _, shown in papers])
        self.library.keep()  # (the texts converted for them, not held until the end of the feeds)

    def _paper_entry(self, post: SourceInfo, link: PaperLink, paper: PaperRecord, texts: PaperTexts) -> FeedEntry:
        anchor = link.anchor
        content = str(self._macros.paper_entry(paper, texts))  # type: ignore[attr-defined]
        content = self.writer.absolute_links(content, post.url)
        url = f"{post.url}#{anchor}" if anchor else post.url
        return self._entry(paper.title, url, post.date, content, paper.categories)

    def topics(self, topics: list[tuple[Topic, list[SourceInfo]]]) -> None:
        """The latest paper pages of each class and tag."""
        for topic, members in topics:
            latest = members[:CATEGORY_FEED_PAPERS]
            feed_key = self.writer.key("feed.xml", topic.kind, topic.name, *map(ref, latest), loads=(MACROS,))
            if not self.writer.stale(topic.feed_url, feed_key):
                continue
            entries = [
                self._entry(page.title, page.url, page.date, self._page_entry(page), (*page.classes, *page.tags))
                for page in latest
            ]
            self._write(topic.feed_url, f"{self.site_title} · {topic.label}：{topic.name}", topic.url, entries)

    def _page_entry(self, page: SourceInfo) -> str:
        """A paper page's feed content: ``paper_details`` of ``_macros.html``, as on the page, with
        absolute links."""
        if page.digest not in self._page_entries:
            parts = self.library.parts(page)
            body = str(self._macros.paper_details(page, parts, self.writer.absolute("")))  # type: ignore[attr-defined]
            self._page_entries[page.digest] = self.writer.absolute_links(body, page.url)
        return self._page_entries[page.digest]

    def _entry(self, title: str, rel: str, day: date, content: str, categories: tuple[str, ...]) -> FeedEntry:
        return FeedEntry(
            _xml(title),
            self.writer.absolute(rel),
            self.writer.atom_id(rel),
            _stamp(day),
            _xml(content),
            tuple(_xml(name) for name in categories),
        )

    def _write(self, rel: str, title: str, html_rel: str, entries: list[FeedEntry]) -> None:
        feed = {
            "title": title,
            "id": self.writer.atom_id(rel),
            "self_url": self.writer.absolute(rel),
            "html_url": self.writer.absolute(html_rel),
            "updated": entries[0].updated if entries else _stamp(date(1970, 1, 1)),
        }
        self.writer.queue(rel, "feed.xml", lambda: {"feed": feed, "entries": entries})
