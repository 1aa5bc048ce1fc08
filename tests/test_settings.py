"""Every setting documented in the code, and `lfp settings` printing exactly what the code says."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from lfp_engine.run.config import SECTIONS, RunConfig, settings_help
from lfp_engine.run.fields import field_docs
from precompute.cli import main


@dataclass
class Undocumented:
    documented: int = 1
    """Has one."""
    bare: int = 2
    after_bare: str = "x"
    """Belongs to after_bare, not to bare."""


def test_field_docs_are_read_from_the_source():
    assert field_docs(Undocumented) == {"documented": "Has one.", "bare": "", "after_bare": "Belongs to after_bare, not to bare."}


@pytest.mark.parametrize("cls", [RunConfig, *SECTIONS.values()], ids=lambda c: c.__name__)
def test_every_setting_has_a_docstring(cls):
    docs = field_docs(cls)
    assert set(docs) == {f.name for f in dataclasses.fields(cls)}
    assert [name for name, doc in docs.items() if not doc] == []
    assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(")  # a docstring, not dataclass's signature


def test_help_lists_every_setting_of_the_config():
    flat = [f"{top}.{key}" for top, value in RunConfig().to_dict().items() if isinstance(value, dict) for key in value]
    flat = [top for top, value in RunConfig().to_dict().items() if not isinstance(value, dict)] + flat
    assert [row.key for row in settings_help()] == flat
    assert [row.key for row in settings_help("divergence")] == ["divergence.top_k"]


def test_lfp_settings_prints_types_choices_defaults_and_docs(capsys):
    assert main(["settings", "sae"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("[sae] The sparse autoencoders")
    assert 'sae.architecture (tied | untied | topk | batchtopk) = "tied"' in out
    assert "sae.dict_multipliers (list[int]) = [1, 2]" in out
    assert "the paper's two dictionaries n and 2n" in out
    assert "rlhf." not in out
    assert main(["settings", "task"]) == 0
    assert "task (vader | classifier | dpo | hh | toxic) = \"vader\"" in capsys.readouterr().out


def test_lfp_settings_shows_where_a_preset_differs(capsys):
    assert main(["settings", "sae", "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "sae.l1_coefficient (float) = 0.001   [tiny: 0.1]" in out
    assert "sae.learning_rate (float) = 0.001\n" in out  # the same in tiny: nothing added


def test_lfp_settings_refuses_an_unknown_section(capsys):
    assert main(["settings", "nonsense"]) == 2
    assert "lfp: error: unknown section 'nonsense'; choose one of: preset, seed" in capsys.readouterr().err
