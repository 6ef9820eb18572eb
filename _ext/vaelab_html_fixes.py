"""Sphinx extension: fixes to the HTML of the book that its browser test (tests/test_browser.py) found.

Each `<script>` body that an extension adds with `app.add_js_file(None, body=...)` after the HTML builder
started (sphinx-thebe's and sphinx-togglebutton's settings) reaches the page twice with Sphinx 7.4: once
as filename None and once as '' (Sphinx's de-duplication compares the two as different). For sphinx-thebe,
whose body declares `const THEBE_JS_URL`, the second copy throws "Identifier 'THEBE_JS_URL' has already been
declared" on every page. This extension drops such repeated scripts from each page.
"""

from __future__ import annotations


def _dedupe_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen = set()
    unique = []
    for js in scripts:
        attributes = getattr(js, "attributes", {}) or {}
        key = (getattr(js, "filename", js) or "", getattr(js, "priority", None), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # the builder restores its own list after each page


def setup(app):
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1.0"}
