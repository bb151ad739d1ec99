"""Markdown and self-contained HTML: tables, the page around a document, and reading the JSON files stages wrote."""

import base64
import json
import re
from pathlib import Path

import markdown

from crossmed.errors import InputError


def read_json(path: Path) -> dict:
    """Return a JSON file an earlier stage wrote; raise InputError naming it when missing."""
    if not path.is_file():
        raise InputError(path, "missing: run the evaluate stage first")
    return json.loads(path.read_text())


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    """Return a Markdown table."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows] + [""]


def _embedded(html: str, base: Path) -> str:
    """Return `html` with every local <img src> replaced by a base64 data URI: one file that opens anywhere."""
    def inline(match: re.Match) -> str:
        path = (base / match.group(1)).resolve()
        if not path.is_file():
            return match.group(0)
        return f'src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"'
    return re.sub(r'src="([^"]+\.png)"', inline, html)


STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
         "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;font-size:.9rem}"
         "img{max-width:100%;height:auto;margin:.25rem;vertical-align:top}pre{background:#f6f6f6;padding:.5rem;overflow-x:auto;font-size:.8rem}")


def html_document(text: str, title: str, markdown_dir: Path) -> str:
    """Return Markdown as one self-contained HTML page; images referenced relative to `markdown_dir` are inlined."""
    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<style>{STYLE}</style></head><body>{_embedded(body, markdown_dir)}</body></html>")
