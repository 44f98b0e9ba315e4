"""TeX in titles and texts -> MathML at build time, so the site shows maths with no script (the CSP
stays ``script-src 'self'``) and the Jekyll posts keep their ``$…$`` source.

``latex2mathml`` does the conversion; it is maintained, pure Python and converts all 203 TeX
snippets of the listings fixture without an exception (~0.2 ms each, cached per string). It does
not always fail loudly, so its output is checked before use and the TeX source is shown instead
(``<span class="math">$…$</span>``, as before) when:

* the TeX has a bare ``%``: TeX reads it as a comment and the converter drops the rest (abstracts
  write ``$18% and 54$`` for two percentages with stray dollars);
* it raises (``x^{``), or leaves an unknown command as text (``\\cite``, ``\\url``);
* the output is not well-formed XML (``\\text{<b>}`` is copied through unescaped), uses an element
  or attribute outside the allow-list below (``\\href`` gives ``href``, ``\\style`` gives ``style``,
  ``\\color`` gives ``mathcolor``), or has lost all the text of a non-empty formula (``\\def``).

The MathML is re-serialised from the parsed tree, wrapped in ``<semantics>`` with the TeX as its
``<annotation>`` (copyable, read by assistive tools), and must still pass the site's sanitiser:
``MATHML_TAGS`` and ``MATHML_ATTRIBUTES`` are the allow-list to add to its ``nh3.Cleaner``. Nothing
in it can run code or load anything: no ``href``, no ``xlink:*``, no ``style``, no ``<maction>``, no
``<annotation-xml>`` (which may hold HTML).
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from functools import lru_cache

MATHML_NS = "http://www.w3.org/1998/Math/MathML"
MATHML_TAGS = frozenset(
    {
        *("math", "semantics", "annotation", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace"),
        *("msub", "msup", "msubsup", "mfrac", "msqrt", "mroot", "mover", "munder", "munderover"),
        *("mtable", "mtr", "mtd", "mlabeledtr", "mstyle", "mpadded", "mphantom", "menclose"),
        *("mmultiscripts", "mprescripts", "none", "mfenced"),
    }
)
_TOKEN_ATTRIBUTES = {
    *("mathvariant", "stretchy", "fence", "form", "separator", "lspace", "rspace", "largeop"),
    *("movablelimits", "accent", "minsize", "maxsize", "symmetric"),
}
_TABLE_ATTRIBUTES = {"columnalign", "rowalign", "rowspacing", "columnspacing", "columnlines", "rowlines", "frame"}
MATHML_ATTRIBUTES: dict[str, frozenset[str]] = {
    "math": frozenset({"display", "xmlns"}),
    "annotation": frozenset({"encoding"}),
    **{tag: frozenset(_TOKEN_ATTRIBUTES) for tag in ("mi", "mn", "mo", "ms", "mtext")},
    "mspace": frozenset({"width", "height", "depth"}),
    "mpadded": frozenset({"width", "height", "depth", "lspace", "voffset"}),
    "mstyle": frozenset({"displaystyle", "scriptlevel", "mathvariant"}),
    "mfrac": frozenset({"linethickness", "bevelled"}),
    "mover": frozenset({"accent"}),
    "munder": frozenset({"accentunder"}),
    "munderover": frozenset({"accent", "accentunder"}),
    "mtable": frozenset(_TABLE_ATTRIBUTES),
    "mtr": frozenset({"columnalign", "rowalign"}),
    "mtd": frozenset({"columnalign", "rowalign", "rowspan", "columnspan"}),
    "menclose": frozenset({"notation"}),
    "mfenced": frozenset({"open", "close", "separators"}),
}
_BARE_PERCENT = re.compile(r"(?<!\\)%")
_COMMAND_LEFT = re.compile(r"\\[a-zA-Z]")
_TEX_TEXT = re.compile(r"\\[a-zA-Z]+|[^a-zA-Z0-9]")
ET.register_namespace("", MATHML_NS)


@lru_cache(maxsize=4096)
def tex_to_mathml(tex: str, display: bool = False) -> str | None:
    """MathML for a TeX formula (without its dollars), or None when it cannot be shown faithfully."""
    # imported here: it takes 50 ms (it reads its own package metadata), which a build that
    # converts nothing, such as a template change, need not spend
    from latex2mathml.converter import convert

    if _BARE_PERCENT.search(tex):
        return None
    try:
        root = ET.fromstring(convert(tex, display="block" if display else "inline"))
    except Exception:  # latex2mathml raises many kinds; any of them means "show the source"
        return None
    texts = []
    for element in root.iter():
        tag = element.tag.removeprefix(f"{{{MATHML_NS}}}")
        if tag not in MATHML_TAGS or not set(element.attrib) <= MATHML_ATTRIBUTES.get(tag, frozenset()):
            return None
        texts += [element.text or "", element.tail or ""]
    text = "".join(texts)
    if _COMMAND_LEFT.search(text) or (not text.strip() and _TEX_TEXT.sub("", tex)):
        return None
    semantics = ET.Element(f"{{{MATHML_NS}}}semantics")
    semantics.extend(list(root))
    for child in list(root):
        root.remove(child)
    annotation = ET.SubElement(semantics, f"{{{MATHML_NS}}}annotation", encoding="application/x-tex")
    annotation.text = tex
    root.append(semantics)
    return ET.tostring(root, encoding="unicode", short_empty_elements=False)


def math_html(tex: str, display: bool = False) -> str:
    """A formula as the site shows it: ``<span class="math">`` (with ``display``) holding MathML, or
    the escaped TeX source with its dollars when it cannot be converted. ``tex`` is plain TeX, not
    HTML-escaped."""
    css = "math display" if display else "math"
    mathml = tex_to_mathml(tex, display)
    if mathml is None:
        dollars = "$$" if display else "$"
        return f'<span class="{css}">{html.escape(dollars + tex + dollars, quote=False)}</span>'
    return f'<span class="{css}">{mathml}</span>'
