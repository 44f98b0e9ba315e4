"""The Jinja environment factory: user templates first, compiled templates reused only when valid."""

from __future__ import annotations

import jinja2

from arxiv_digest import templating


def test_a_template_compiled_for_one_environment_is_not_reused_with_other_escaping(tmp_path) -> None:
    (tmp_path / "page.html").write_text("<p>{{ text }}</p>", encoding="utf-8")
    plain = templating.environment([tmp_path])
    escaping = templating.environment([tmp_path], autoescape=jinja2.select_autoescape(["html"]))
    assert plain.get_template("page.html").render(text="<b>") == "<p><b></p>"
    assert escaping.get_template("page.html").render(text="<b>") == "<p>&lt;b&gt;</p>"
    assert templating.environment([tmp_path]).get_template("page.html").render(text="<b>") == "<p><b></p>"


def test_an_edited_template_is_compiled_again_by_the_next_environment(tmp_path) -> None:
    template = tmp_path / "post.md.j2"
    template.write_text("first {{ n }}", encoding="utf-8")
    assert templating.environment([tmp_path]).get_template("post.md.j2").render(n=1) == "first 1"
    template.write_text("second {{ n }}", encoding="utf-8")
    assert templating.environment([tmp_path]).get_template("post.md.j2").render(n=2) == "second 2"


def test_a_user_template_wins_and_the_packaged_one_stays_reachable(tmp_path) -> None:
    (tmp_path / "post.md.j2").write_text("mine", encoding="utf-8")
    env = templating.environment([tmp_path])
    assert env.get_template("post.md.j2").filename == str((tmp_path / "post.md.j2").resolve())
    assert env.get_template("post.md.j2").render() == "mine"
    packaged = env.loader.get_source(env, "!default/post.md.j2")[1]
    assert packaged == str(templating.packaged_dir() / "post.md.j2")
