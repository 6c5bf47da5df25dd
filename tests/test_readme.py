"""README.md is kept in step with the data it shows."""

from __future__ import annotations

from pathlib import Path

from harness.expectations import derive_table, proxied_mode_traits, render_markdown

README = Path(__file__).resolve().parent.parent / "README.md"


def _block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert start in text and end in text, f"README.md lost its {start} ... {end} block"
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def test_readme_leak_table_is_the_derived_one() -> None:
    assert _block("expectations") == render_markdown(derive_table(), reasons=False).strip(), (
        "README.md's leak table differs from harness.expectations: paste"
        " render_markdown(derive_table(), reasons=False) between the markers"
    )


def test_readme_nginx_table_is_the_derived_one() -> None:
    derived = render_markdown(derive_table(proxied_mode_traits()), reasons=False).strip()
    assert _block("expectations-nginx") == derived, (
        "README.md's nginx table differs from harness.expectations: paste"
        " render_markdown(derive_table(proxied_mode_traits()), reasons=False) between the markers"
    )


def test_readme_corpus_table_is_the_derived_one() -> None:
    from harness.corpus import render_markdown as render_corpus

    assert _block("corpus") == render_corpus().strip(), (
        "README.md's 'Leaks ctxbench catches' table differs from harness.corpus: paste"
        " harness.corpus.render_markdown() between the corpus markers"
    )


def test_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    fence = quick.split("```", 2)[1]
    commands = [line for line in fence.splitlines() if line.strip()]
    assert commands == ["make run", "make test"]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in ci.splitlines()
