"""Persona files: the shipped ones load with distinct voices; bad ones are refused with
the file, the field and the reason; traits drift and are pulled back."""

from __future__ import annotations

from pathlib import Path

import pytest

from botarena.agents.persona import PersonaError, Trait, Traits, load_persona, load_personas
from botarena.arenas.names import ARENAS

pytestmark = pytest.mark.unit

SHIPPED = Path(__file__).resolve().parent.parent / "agents" / "personas"

GOOD = """\
id: tester
display_name: Tester
role: Test engineer
goal: Break things on purpose.
backstory: Has seen every kind of bug.
arenas: [compiler]
traits:
  rigor: {anchor: 0.8, elasticity: 0.5}
"""


def test_shipped_personas_cover_every_arena_with_distinct_voices() -> None:
    personas, errors = load_personas(SHIPPED)
    assert errors == []
    assert {a for p in personas for a in p.arenas} == set(ARENAS)
    assert len({p.voice for p in personas}) == len(personas)
    assert len({p.id for p in personas}) == len(personas)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (GOOD.replace("role: Test engineer\n", ""), "role", "Field required"),
        (GOOD.replace("[compiler]", "[moon]"), "arenas", "not an arena: moon"),
        (GOOD.replace("[compiler]", "[]"), "arenas", "at least 1"),
        (GOOD.replace("anchor: 0.8", "anchor: 1.5"), "traits.rigor.anchor", "less than or equal"),
        (GOOD.replace("id: tester", "id: Not Valid"), "id", "pattern"),
        (GOOD + "favourite_colour: blue\n", "favourite_colour", "Extra inputs"),
        (GOOD.replace("rigor:", "Rigor!:"), "traits.Rigor!.[key]", "pattern"),
        ("role: [unclosed\n", "line 2", "not valid YAML"),
        ("- just\n- a list\n", "(file)", "mapping"),
        ("", "(file)", "mapping"),
    ],
)
def test_a_malformed_persona_names_file_field_and_reason(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PersonaError) as err:
        load_persona(path)
    assert err.value.path == path
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(path) in str(err.value)


def test_binary_and_huge_files_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 10)
    huge = tmp_path / "huge.yaml"
    huge.write_text(GOOD + "# " + "x" * 70_000 + "\n")
    with pytest.raises(PersonaError, match="UTF-8"):
        load_persona(binary)
    with pytest.raises(PersonaError, match="64 KiB"):
        load_persona(huge)


def test_a_directory_loads_the_good_and_reports_the_bad(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)  # same id again
    (tmp_path / "c.yaml").write_text("id: [")
    personas, errors = load_personas(tmp_path)
    assert [p.id for p in personas] == ["tester"]
    assert [(e.path.name, e.field) for e in errors] == [("b.yaml", "id"), ("c.yaml", "line 1")]


def test_traits_drift_with_experience_and_return_to_their_anchor() -> None:
    traits = Traits({"rigor": Trait(anchor=0.5, elasticity=0.5), "calm": Trait(anchor=0.2)})
    traits.nudge("rigor", 0.4)
    traits.nudge("unknown", 1.0)  # ignored
    assert traits.drift() == {"rigor": 0.4, "calm": 0.0}
    traits.relax()
    assert traits.drift()["rigor"] == pytest.approx(0.2)
    for _ in range(20):
        traits.relax()
    assert abs(traits.drift()["rigor"]) < 0.001
    traits.nudge("calm", -5)
    assert traits.values["calm"] == 0.0  # clipped to [0, 1]
