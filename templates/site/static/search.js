// Static search over the files arxiv_digest.site writes under search/ (see _SearchIndex there).
// The query's tokens (CJK bigrams, a word's first three letters) pick candidate posts from the
// index; every paper of a candidate is then checked for each query term as a substring, newest
// first. Text is only ever inserted with textContent, so nothing in the index can become markup.
(() => {
  "use strict";
  const base = new URL("../search/", document.currentScript.src);
  const CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";
  const WORD = new RegExp(`[${CJK}]+|(?:(?![${CJK}])[\\p{L}\\p{N}])+`, "gu");
  const IS_CJK = new RegExp(`^[${CJK}]`, "u");
  const PAGE = 50;
  const form = document.querySelector(".search-form");
  const input = form.querySelector("input[name=q]");
  const status = document.getElementById("search-status");
  const list = document.getElementById("search-results");
  const more = document.getElementById("search-more");
  const files = new Map();

  // The same steps as normalize() in site.py: NFKC, lower case, accents dropped.
  const normalize = (text) =>
    text.normalize("NFKC").toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "");

  function tokens(text) {
    const out = new Set();
    for (const word of normalize(text).match(WORD) || []) {
      const chars = Array.from(word);
      if (!IS_CJK.test(word)) out.add(chars.slice(0, 3).join(""));
      else if (chars.length === 1) out.add(word);
      else for (let i = 0; i + 1 < chars.length; i++) out.add(chars[i] + chars[i + 1]);
    }
    return out;
  }

  // shard_of() in site.py: first and last code point mixed.
  function shardOf(token, shards) {
    const chars = Array.from(token);
    return (chars[0].codePointAt(0) * 31 + chars[chars.length - 1].codePointAt(0)) % shards;
  }

  function getJSON(path) {
    if (!files.has(path)) {
      files.set(
        path,
        fetch(new URL(path, base)).then((response) => {
          if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
          return response.json();
        }),
      );
    }
    return files.get(path);
  }

  async function candidates(terms) {
    const index = await getJSON("posts.json");
    const wanted = new Set(terms.flatMap((term) => [...tokens(term)]));
    let ids = null;
    for (const token of wanted) {
      const shard = await getJSON(`i/${shardOf(token, index.shards).toString(16).padStart(2, "0")}.json`);
      const found = new Set((shard[token] || "").split(",").filter(Boolean));
      ids = ids ? new Set([...ids].filter((id) => found.has(id))) : found;
      if (!ids.size) break;
    }
    return index.posts.filter(([id]) => !ids || ids.has(id));
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function snippet(text, term) {
    const p = el("p", "snippet");
    const at = normalize(text).indexOf(term);
    if (at < 0) {
      p.textContent = text.length > 120 ? `${text.slice(0, 120)}…` : text;
      return p;
    }
    const start = Math.max(0, at - 40);
    p.append(start > 0 ? "…" : "", text.slice(start, at), el("mark", "", text.slice(at, at + term.length)));
    p.append(text.slice(at + term.length, at + term.length + 80), "…");
    return p;
  }

  function show([anchor, title, authors, arxivId, text], [, url, date], terms) {
    const item = el("li");
    const link = el("a", "result-title", title);
    link.href = new URL(`../${url}${anchor ? `#${anchor}` : ""}`, base).href;
    const names = authors.split(", ");
    const byline = names.length > 3 ? `${names.slice(0, 3).join(", ")} 等 ${names.length} 位作者` : authors;
    item.append(link, el("div", "meta", [date, byline, arxivId].filter(Boolean).join(" · ")));
    item.append(snippet(text, terms.find((term) => normalize(text).includes(term)) || terms[0]));
    list.append(item);
  }

  async function run(query) {
    const terms = normalize(query).split(/\s+/).filter(Boolean);
    list.replaceChildren();
    more.hidden = true;
    if (!terms.length) {
      status.textContent = "";
      return;
    }
    status.textContent = "搜索中…";
    const posts = await candidates(terms);
    let next = 0;
    let found = 0;
    const page = async () => {
      more.hidden = true;
      let shown = 0;
      while (next < posts.length && shown < PAGE) {
        const batch = posts.slice(next, next + 4);
        next += batch.length;
        const docs = await Promise.all(batch.map(([id]) => getJSON(`d/${id}.json`)));
        docs.forEach((doc, i) => {
          for (const paper of doc) {
            const haystack = normalize(paper.slice(1).join(" "));
            if (terms.every((term) => haystack.includes(term))) {
              show(paper, batch[i], terms);
              shown += 1;
            }
          }
        });
      }
      found += shown;
      more.hidden = next >= posts.length;
      status.textContent = found
        ? `找到 ${found} 篇论文${next < posts.length ? "（还有更早的文章未搜索）" : ""}`
        : "没有找到匹配的论文。";
    };
    more.onclick = () => page().catch(fail);
    await page();
  }

  function fail(error) {
    status.textContent = `搜索失败：${error.message}`;
  }

  const query = new URLSearchParams(location.search).get("q") || "";
  input.value = query;
  run(query).catch(fail);
})();
