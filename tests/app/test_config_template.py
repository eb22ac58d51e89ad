"""`mmoe config init`: the template parses to the defaults and docs/config.md shows it."""

from pathlib import Path

import pytest

from mmoe.app.config_file import KEY_HELP, template
from mmoe.app.spec import TOML_KEYS, build_run_spec
from mmoe.cli import main

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_every_key_is_in_the_template_with_its_meaning():
    assert {s: set(k) for s, k in KEY_HELP.items()} == {s: set(k) for s, k in TOML_KEYS.items()}
    text = template()
    for section, keys in KEY_HELP.items():
        assert f"[{section}]" in text
        for key, meaning in keys.items():
            assert f"# {meaning}" in text, key


def test_the_template_parses_to_the_defaults(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(template())
    assert build_run_spec(str(path)) == build_run_spec(train=str(tmp_path / "train.csv"),
                                                       tasks=["label:binary:yes"])


def test_the_cli_prints_or_writes_it(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["config", "init"])
    assert exit_.value.code in (0, None) and capsys.readouterr().out == template()
    with pytest.raises(SystemExit):
        main(["config", "init", "--out", str(tmp_path / "r.toml")])
    assert (tmp_path / "r.toml").read_text() == template()


def test_docs_show_the_current_template():
    assert template() in DOCS.read_text(), "regenerate docs/config.md (mmoe config init)"
