import pytest

from rsim_graph.errors import StrategyError
from rsim_graph.strategies import Strategy, StrategyLibrary, load_strategies

NINE = ["understand", "decompose", "sub-plan", "deep-think", "self-reflect", "validate", "backtrack", "summarize", "terminate"]


def test_default_library_has_the_papers_nine_strategies(library):
    assert library.ids == NINE
    assert library.terminal_id == "terminate"
    assert all(s.prompt and s.description and s.name for s in library)
    assert library.render("validate") == library.get("validate").prompt + "\n"


def test_yaml_library_with_a_tenth_strategy_and_own_wording(tmp_path, library):
    big = library.extend([Strategy("estimate", "Estimate", "Estimate: guess the size first.", follow="about")])
    path = tmp_path / "ten.yaml"
    big.save(path)
    loaded = load_strategies(path)
    assert len(loaded) == 10 and loaded.index("estimate") == 9
    assert loaded.get("estimate").followed_by("about 200") and not loaded.get("estimate").followed_by("200")
    assert loaded.index("terminate") == 8  # existing rows keep their positions


def test_plain_list_yaml(tmp_path):
    (tmp_path / "s.yaml").write_text("- {id: think, name: Think, prompt: 'Think.'}\n- {id: stop, name: Stop, prompt: 'Answer.', terminal: true}\n")
    lib = load_strategies(tmp_path / "s.yaml")
    assert lib.ids == ["think", "stop"] and lib.terminal_id == "stop"


def test_unknown_strategy_names_the_library(library):
    with pytest.raises(StrategyError, match="unknown strategy 'guess'.*understand, decompose"):
        library.index("guess")


def test_duplicate_ids_are_refused():
    s = Strategy("a", "A", "do a", terminal=True)
    with pytest.raises(StrategyError, match="duplicate strategy id 'a'"):
        StrategyLibrary((s, Strategy("a", "A2", "again")))


def test_library_needs_one_terminating_strategy(tmp_path):
    with pytest.raises(StrategyError, match="exactly one terminating strategy.*found 0"):
        StrategyLibrary((Strategy("a", "A", "do a"),))
    (tmp_path / "s.yaml").write_text("- {id: a, name: A, prompt: x}\n")
    with pytest.raises(StrategyError, match="terminal: true"):
        load_strategies(tmp_path / "s.yaml")


def test_bad_yaml_inputs(tmp_path):
    with pytest.raises(StrategyError, match="does not exist"):
        load_strategies(tmp_path / "missing.yaml")
    (tmp_path / "s.yaml").write_text("- {id: a, name: A, prompt: x, colour: red, terminal: true}\n")
    with pytest.raises(StrategyError, match="unknown keys \\['colour'\\]"):
        load_strategies(tmp_path / "s.yaml")
    with pytest.raises(StrategyError, match="invalid"):
        Strategy("Bad Id", "B", "x")
