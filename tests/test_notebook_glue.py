"""vaelab.glue: myst-nb's glue where myst-nb is installed (the book), nothing visible where it is not
(Colab), and the value returned unchanged either way."""

from __future__ import annotations

import sys

import pytest
from IPython.core.formatters import PlainTextFormatter

import vaelab


def test_glue_calls_myst_nb_without_displaying_and_returns_the_value(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append((name, value, display)))
    assert vaelab.glue("ch14-k", 1000) == 1000
    assert calls == [("ch14-k", 1000, False)]


def test_a_format_glues_the_text_the_prose_shows(monkeypatch):
    myst_nb = pytest.importorskip("myst_nb")
    from myst_nb.core.variables import format_plain_text  # what {glue:text} does with the stored text

    calls = []
    monkeypatch.setattr(myst_nb, "glue", lambda name, value, display=True: calls.append(value))
    value = 20000.0
    assert vaelab.glue("ch14-n", value, ",.0f") is value  # the number itself comes back
    assert vaelab.glue("ch14-bpd", 3.14159, ".2f") == 3.14159
    shown = [format_plain_text(PlainTextFormatter()(v), "s") for v in calls]
    assert shown == ["20,000", "3.14"]  # as formatted: no quotes, no tuple from the comma


def test_without_myst_nb_glue_shows_nothing_and_returns_the_value(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # import myst_nb raises ImportError, as on Colab
    values = [0.5, "text", [1, 2]]
    for value in values:
        assert vaelab.glue("name", value, None) is value
    assert vaelab.glue("name", 2.0, ".3f") == 2.0
    assert capsys.readouterr() == ("", "")


def test_glue_in_a_kernel_stores_the_value_for_myst_nb():
    pytest.importorskip("myst_nb")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        shell.display_pub.clear_output = lambda *a, **k: None
        published = []
        shell.display_pub.publish = lambda data, metadata=None, **kwargs: published.append((data, metadata))
        vaelab.glue("ch14-nats", 2.5, ".1f")
    finally:
        InteractiveShell.clear_instance()
    ((data, metadata),) = published
    from myst_nb.core.variables import format_plain_text

    assert list(data) == ["application/papermill.record/text/plain"]  # the key myst-nb reads
    assert format_plain_text(data["application/papermill.record/text/plain"], "s") == "2.5"
    assert metadata["scrapbook"]["name"] == "ch14-nats"


def test_a_name_must_be_a_non_empty_string():
    with pytest.raises(TypeError, match="name must be a non-empty string"):
        vaelab.glue("", 1.0)
