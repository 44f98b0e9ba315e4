// Paper search over the files arxiv_digest.search_index writes under search/ (the format is
// described there). src/arxiv_digest/search_query.py runs the same steps in Python; keep the two in
// step (tests/test_search_browser.py compares them). A query costs at most four rounds of requests:
// meta.gz; the dictionary shards holding its terms; postings files of long lists; the records of the
// results shown. Text is only inserted with textContent, so nothing in the index becomes markup.
(() => {
  "use strict";
  const base = new URL("../search/", document.currentScript.src);
  const CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff";
  const TOKEN = new RegExp(`[${CJK}]+|(?:(?![${CJK}])[\\p{L}\\p{N}])+`, "gu");
  const IS_CJK = new RegExp(`^[${CJK}]`, "u");
  const SEGMENT = /"([^"]*)"?|([^"]+)/g;
  const PAGE = 10;
  const PREFIX_MIN = 3;
  const PREFIX_TERMS = 6;
  const IDF_SCALE = 10000;
  const DEBOUNCE_MS = 200;
  const form = document.querySelector(".search-form");
  const input = form.querySelector("input[name=q]");
  const status = document.getElementById("search-status");
  const list = document.getElementById("search-results");
  const more = document.getElementById("search-more");
  const files = new Map();
  let meta = null;
  let latest = 0;

  // search_text.fold: NFKC, lower case, accents dropped.
  const fold = (text) => text.normalize("NFKC").toLowerCase().normalize("NFD").replace(/[\u0300-\u036f]/g, "");
  const tokens = (text) => fold(text).match(TOKEN) || [];
  const isCjk = (token) => IS_CJK.test(token);
  const runTerms = (run) => {
    if (run.length === 1) return [run];
    const out = [];
    for (let i = 0; i + 1 < run.length; i++) out.push(run.slice(i, i + 2));
    return out;
  };

  // search_query.parse: clauses a paper must all match; the last word being typed is a prefix.
  function parse(query) {
    const clauses = [];
    const segments = [...query.matchAll(SEGMENT)];
    const lastChar = query.slice(-1);
    const typing = query.length > 0 && !/\s/.test(lastChar) && lastChar !== '"';
    segments.forEach((segment, number) => {
      const quoted = segment[1] !== undefined;
      const found = tokens(quoted ? segment[1] : segment[2]);
      if (quoted) {
        found.forEach((token, index) => {
          if (isCjk(token)) {
            for (const term of runTerms(token)) clauses.push({ terms: [term], prefix: "" });
            return;
          }
          const before = index > 0 && !isCjk(found[index - 1]);
          const after = index + 1 < found.length && !isCjk(found[index + 1]);
          if (after) clauses.push({ terms: [`${token} ${found[index + 1]}`], prefix: "" });
          else if (!before) clauses.push({ terms: [token], prefix: "" });
        });
        return;
      }
      const last = number === segments.length - 1;
      found.forEach((token, index) => {
        const prefix = typing && last && index === found.length - 1;
        if (isCjk(token)) {
          if (prefix && token.length === 1) clauses.push({ terms: [], prefix: token });
          else for (const term of runTerms(token)) clauses.push({ terms: [term], prefix: "" });
        } else if (prefix && Array.from(token).length >= PREFIX_MIN) {
          clauses.push({ terms: [], prefix: token });
        } else {
          clauses.push({ terms: [token], prefix: "" });
        }
      });
    });
    const seen = new Set();
    return clauses.filter((clause) => {
      const key = `${clause.terms.join("\u0000")}\u0001${clause.prefix}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }

  function load(path, fresh) {
    if (!files.has(path)) {
      const promise = fetch(new URL(path, base), fresh ? { cache: "no-cache" } : {}).then(async (response) => {
        if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
        const raw = await response.arrayBuffer();
        const head = new Uint8Array(raw, 0, Math.min(2, raw.byteLength));
        if (head[0] !== 0x1f || head[1] !== 0x8b) return raw; // a server that sent it as Content-Encoding: gzip
        return new Response(new Blob([raw]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
      });
      files.set(path, promise);
      promise.catch(() => files.delete(path));
    }
    return files.get(path);
  }
  const text = (buffer) => new TextDecoder().decode(buffer);
  const loadJson = async (path, fresh) => JSON.parse(text(await load(path, fresh)));

  function varint(bytes, at) {
    let value = 0;
    let scale = 1;
    for (;;) {
      const byte = bytes[at.pos++];
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
  }

  // search_segments.parse_shard: count and terms bytes, then df, gap bytes and file per term (u32,
  // little-endian), the terms joined by newlines, the inline postings. [term, df, gap bytes, file, inline]
  function parseShard(buffer) {
    const view = new DataView(buffer);
    const count = view.getUint32(0, true);
    const size = view.getUint32(4, true);
    const column = (i, k) => view.getUint32(8 + 4 * (count * i + k), true);
    const at = 8 + 12 * count;
    const terms = new TextDecoder().decode(new Uint8Array(buffer, at, size)).split("\n");
    const bytes = new Uint8Array(buffer, at + size);
    const entries = [];
    let offset = 0;
    for (let k = 0; k < count; k++) {
      const [df, gapLength, file] = [column(0, k), column(1, k), column(2, k)];
      let inline = null;
      if (!file) {
        inline = bytes.subarray(offset, offset + gapLength + df);
        offset += gapLength + df;
      }
      entries.push([terms[k], df, gapLength, file, inline]);
    }
    return entries;
  }

  function decodePostings(bytes, df, gapLength, into) {
    const at = { pos: 0 };
    let id = 0;
    for (let i = 0; i < df; i++) {
      id += varint(bytes, at);
      into.set(id, bytes[gapLength + i]);
    }
  }

  function shardOf(bounds, term) {
    let low = 0;
    let high = bounds.length;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (term < bounds[middle]) high = middle;
      else low = middle + 1;
    }
    return low - 1;
  }

  const idf = (papers, df) => Math.floor(IDF_SCALE * Math.log(1 + (papers - df + 0.5) / (df + 0.5)) + 0.5);

  // search_query.Searcher.search: ranked paper ids.
  async function search(query) {
    const clauses = parse(query);
    if (!clauses.length) return null;
    meta ??= await loadJson("meta.gz", true);
    const paths = [];
    for (const segment of meta.segments) {
      const shards = new Set();
      for (const clause of clauses) {
        if (clause.prefix) {
          const high = shardOf(segment.bounds, `${clause.prefix}\uffff`);
          for (let k = Math.max(shardOf(segment.bounds, clause.prefix), 0); k <= high; k++) shards.add(k);
        }
        for (const term of clause.terms) {
          const k = shardOf(segment.bounds, term);
          if (k >= 0) shards.add(k);
        }
      }
      for (const k of [...shards].sort((a, b) => a - b)) paths.push([segment.name, `${segment.name}/d${k}.gz`]);
    }
    const entries = new Map();
    const shards = await Promise.all(paths.map(([, path]) => load(path)));
    shards.forEach((buffer, i) => {
      for (const [term, ...entry] of parseShard(buffer)) {
        if (!entries.has(term)) entries.set(term, []);
        entries.get(term).push([paths[i][0], ...entry]);
      }
    });
    const dfOf = (term) => (entries.get(term) || []).reduce((sum, entry) => sum + entry[1], 0);

    const chosen = clauses.map((clause) => {
      if (!clause.prefix) return clause.terms.filter((term) => entries.has(term));
      const found = [...entries.keys()]
        .filter((term) => term.startsWith(clause.prefix))
        .sort((a, b) => (a !== clause.prefix) - (b !== clause.prefix) || dfOf(b) - dfOf(a) || (a < b ? -1 : 1));
      const terms = [];
      let total = 0;
      for (const term of found.slice(0, PREFIX_TERMS)) {
        if (terms.length && total + dfOf(term) > meta.papers) break;
        terms.push(term);
        total += dfOf(term);
      }
      return terms;
    });
    if (!chosen.every((terms) => terms.length)) return { ranked: [], meta };

    const needed = [...new Set(chosen.flat())];
    const external = [];
    for (const term of needed) {
      for (const [segment, , , file] of entries.get(term)) if (file) external.push(`${segment}/p${file - 1}.gz`);
    }
    const loaded = new Map();
    (await Promise.all(external.map((path) => load(path)))).forEach((buffer, i) => {
      loaded.set(external[i], new Uint8Array(buffer));
    });
    const postings = new Map();
    for (const term of needed) {
      const hits = new Map();
      for (const [segment, df, gapLength, file, inline] of entries.get(term)) {
        decodePostings(file ? loaded.get(`${segment}/p${file - 1}.gz`) : inline, df, gapLength, hits);
      }
      postings.set(term, hits);
    }

    let scores = null;
    const sized = chosen.map((terms) => [terms.reduce((sum, term) => sum + postings.get(term).size, 0), terms]);
    sized.sort((a, b) => a[0] - b[0]);
    for (const [, terms] of sized) {
      const best = new Map();
      for (const term of terms) {
        const weight = idf(meta.papers, dfOf(term));
        for (const [paper, impact] of postings.get(term)) {
          if (scores === null || scores.has(paper)) best.set(paper, Math.max(best.get(paper) || 0, weight * impact));
        }
      }
      if (scores === null) scores = best;
      else {
        const next = new Map();
        for (const [paper, score] of scores) if (best.has(paper)) next.set(paper, score + best.get(paper));
        scores = next;
      }
    }
    const bits = meta.slot_bits;
    const mask = (1 << bits) - 1;
    const ranked = [...scores.keys()].sort(
      (a, b) => scores.get(b) - scores.get(a) || (b >> bits) - (a >> bits) || (a & mask) - (b & mask),
    );
    return { ranked, meta };
  }

  async function records(ids) {
    const { slot_bits: bits, records_per_file: perFile } = meta;
    const mask = (1 << bits) - 1;
    const pathOf = (id) => `r/${id >> bits}.${Math.floor((id & mask) / perFile)}.gz`;
    const paths = [...new Set(ids.map(pathOf))];
    const found = new Map();
    (await Promise.all(paths.map((path) => loadJson(path)))).forEach((data, i) => found.set(paths[i], data));
    return ids.map((id) => found.get(pathOf(id))[(id & mask) % perFile]);
  }

  // Highlighting: query words found in folded text, mapped back to the original characters.
  function marks(original, words) {
    let folded = "";
    const from = [];
    let index = 0;
    for (const char of original) {
      const part = fold(char);
      folded += part;
      for (let k = 0; k < part.length; k++) from.push(index);
      index += char.length;
    }
    from.push(index);
    const spans = [];
    for (const word of words) {
      for (let at = folded.indexOf(word); at >= 0; at = folded.indexOf(word, at + word.length)) {
        spans.push([from[at], from[at + word.length]]);
      }
    }
    spans.sort((a, b) => a[0] - b[0]);
    const merged = [];
    for (const span of spans) {
      if (merged.length && span[0] <= merged[merged.length - 1][1]) {
        merged[merged.length - 1][1] = Math.max(merged[merged.length - 1][1], span[1]);
      } else merged.push([...span]);
    }
    return merged;
  }

  function el(tag, className, content) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (content !== undefined) node.textContent = content;
    return node;
  }

  function highlighted(node, original, words, start = 0, end = original.length) {
    let at = start;
    for (const [low, high] of marks(original, words)) {
      if (high <= start || low >= end) continue;
      node.append(original.slice(at, Math.max(low, at)), el("mark", "", original.slice(Math.max(low, at), high)));
      at = high;
    }
    node.append(original.slice(at, end));
    return node;
  }

  function snippet(textValue, words) {
    const p = el("p", "snippet");
    if (!textValue) return p;
    const found = marks(textValue, words);
    const start = found.length ? Math.max(0, found[0][0] - 40) : 0;
    const end = Math.min(textValue.length, start + 160);
    if (start > 0) p.append("…");
    highlighted(p, textValue, words, start, end);
    if (end < textValue.length) p.append("…");
    return p;
  }

  function show(record, words) {
    const item = el("li");
    const link = highlighted(el("a", "result-title"), record.t, words);
    link.href = new URL(`../${record.u}`, base).href;
    const authors = (record.a || []).join(", ") + (record.n ? ` 等 ${record.n} 位作者` : "");
    const facts = [record.d, authors, record.i, record.k, (record.g || []).join("、")];
    item.append(link);
    if (record.h) item.append(highlighted(el("div", "title-zh"), record.h, words));
    item.append(highlighted(el("div", "meta"), facts.filter(Boolean).join(" · "), words));
    item.append(snippet(record.z || "", words));
    list.append(item);
  }

  function words(query) {
    return [...new Set(tokens(query.replaceAll('"', " ")))].sort((a, b) => b.length - a.length);
  }

  async function run(query) {
    const ticket = ++latest;
    more.hidden = true;
    if (!query.trim()) {
      list.replaceChildren();
      status.textContent = "";
      return;
    }
    status.textContent = "搜索中…";
    const found = await search(query);
    if (ticket !== latest) return;
    list.replaceChildren();
    if (!found || !found.ranked.length) {
      status.textContent = "没有找到匹配的论文。";
      return;
    }
    const { ranked } = found;
    const highlight = words(query);
    let shown = 0;
    const page = async () => {
      const ids = ranked.slice(shown, shown + PAGE);
      const batch = await records(ids);
      if (ticket !== latest) return;
      for (const record of batch) show(record, highlight);
      shown += ids.length;
      more.hidden = shown >= ranked.length;
      status.textContent = `找到 ${ranked.length} 篇论文${shown < ranked.length ? `，显示前 ${shown} 篇` : ""}`;
    };
    more.onclick = () => page().catch(fail);
    await page();
  }

  function fail(error) {
    status.textContent = `搜索失败：${error.message}`;
  }

  let timer = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const url = new URL(location.href);
      url.searchParams.set("q", input.value);
      history.replaceState(null, "", url);
      run(input.value).catch(fail);
    }, DEBOUNCE_MS);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    run(input.value).catch(fail);
  });

  const query = new URLSearchParams(location.search).get("q") || "";
  input.value = query;
  run(query).catch(fail);
})();
