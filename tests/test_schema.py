"""Decision trees: built-in trees, DAG handling, validation messages, files."""

import json

import numpy as np
import pytest

from galaxymorph import Question, Schema, SchemaError, get_schema, list_schemas


def test_builtin_trees_have_the_published_sizes():
    assert get_schema("gz_decals_dr5").n_questions == 10
    assert get_schema("gz_decals_dr5").n_answers == 34
    assert get_schema("gz2").n_questions == 11
    assert get_schema("gz2").n_answers == 37
    assert set(list_schemas()) >= {"gz_decals_dr5", "gz_decals_dr8", "gz_desi", "gz2"}


def test_decals_columns_match_the_public_catalogue():
    answers = get_schema("gz_decals_dr5").answers
    assert answers[:3] == ("smooth-or-featured_smooth", "smooth-or-featured_featured-or-disk", "smooth-or-featured_artifact")
    assert "spiral-arm-count_more-than-4" in answers
    assert "merging_major-disturbance" in answers
    assert "bar_weak" in answers


def test_answers_are_contiguous_per_question():
    schema = get_schema("gz2")
    for q, sl in enumerate(schema.slices):
        assert (schema.question_index[sl] == q).all()
        assert schema.answers[sl] == schema.questions[q].columns
    assert schema.answer_matrix.sum(axis=0).tolist() == [len(q.answers) for q in schema.questions]


def test_gz2_is_a_dag_with_several_parents():
    schema = get_schema("gz2")
    bulge = schema.question("bulge-size")
    assert "has-spiral-arms_no" in bulge.after and "spiral-arm-count_cant-tell" in bulge.after
    order = [schema.questions[i].name for i in schema.topological_order]
    assert order.index("spiral-arm-count") < order.index("bulge-size") < order.index("something-odd")
    assert order[0] == "smooth-or-featured"


def test_campaign_suffix_keeps_votes_apart():
    dr8 = get_schema("gz_decals_dr8", campaign="dr8")
    assert dr8.answers[0] == "smooth-or-featured-dr8_smooth"
    assert dr8.question("disk-edge-on-dr8").after == ("smooth-or-featured-dr8_featured-or-disk",)
    both = Schema.combine("dr5+dr8", get_schema("gz_decals_dr5", campaign="dr5"), dr8)
    assert both.n_answers == 68 and len(set(both.answers)) == 68


def test_cycle_is_rejected_naming_the_questions():
    with pytest.raises(SchemaError, match="cycle.*'b'"):
        Schema("loop", [Question("a", ("x", "y")), Question("b", ("x", "y"), after=("c_x",)), Question("c", ("x", "y"), after=("b_y",))])


def test_unknown_parent_is_named_with_a_suggestion():
    with pytest.raises(SchemaError, match="unknown answer 'a_yse'.*did you mean 'a_yes'"):
        Schema("t", [Question("a", ("yes", "no")), Question("b", ("x", "y"), after=("a_yse",))])


@pytest.mark.parametrize(
    "questions, message",
    [
        ([Question("a", ("x", "y")), Question("a", ("x", "z"))], "duplicate question name 'a'"),
        ([Question("a", ("x", "x"))], "duplicate answer 'x' in question 'a'"),
        ([Question("a_b", ("x", "y"))], "contain no '_'"),
        ([Question("a", ("x",))], "at least two answers"),
    ],
)
def test_bad_trees_name_the_culprit(questions, message):
    with pytest.raises(SchemaError, match=message):
        Schema("bad", questions)


def test_unknown_builtin_suggests_close_names():
    with pytest.raises(KeyError, match="gz_decals_dr5"):
        get_schema("gz_decals_dr6")


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_file_round_trip(tmp_path, suffix):
    schema = get_schema("gz2")
    path = tmp_path / f"tree{suffix}"
    data = schema.to_dict()
    if suffix == ".json":
        path.write_text(json.dumps(data))
    elif suffix == ".yaml":
        import yaml

        path.write_text(yaml.safe_dump(data))
    else:
        lines = [f'name = "{data["name"]}"']
        for q in data["questions"]:
            lines += ["[[questions]]", f'name = "{q["name"]}"', f"answers = {json.dumps(q['answers'])}",
                      f"after = {json.dumps(q['after'])}"]
            lines.append(f'text = {json.dumps(q["text"])}')
        path.write_text("\n".join(lines))
    loaded = get_schema(str(path))
    assert loaded.answers == schema.answers
    assert loaded.parent_answers == schema.parent_answers
    assert np.array_equal(loaded.answer_matrix, schema.answer_matrix)


def test_a_few_lines_of_python_define_a_tree():
    schema = Schema("rings", [Question("has-ring", ("yes", "no")), Question("ring-type", ("inner", "outer"), after=("has-ring_yes",))])
    assert schema.answers == ("has-ring_yes", "has-ring_no", "ring-type_inner", "ring-type_outer")
    assert Schema.from_dict(schema.to_dict()) == schema
