import pytest

from airflow_llm_batch.batch.templates import PromptTemplate, TemplateFieldError
from airflow_llm_batch.exceptions import ConfigurationError


def test_fields_are_filled_from_the_item():
    template = PromptTemplate("Subject: {subject}\n{body}")
    assert template.fields == ("subject", "body")
    assert template.render({"subject": "Hi", "body": "text", "other": 1}) == "Subject: Hi\ntext"


def test_item_values_are_inserted_literally_and_never_rendered_again():
    template = PromptTemplate("Ticket: {body}")
    body = "my page shows {{ ds }} and {subject} and {0}"
    assert template.render({"body": body}) == f"Ticket: {body}"


def test_double_braces_in_the_template_are_literal_braces():
    assert PromptTemplate('Answer like {{"a": 1}} for {x}').render({"x": "y"}) == 'Answer like {"a": 1} for y'


def test_non_string_values_are_converted():
    assert PromptTemplate("{n} items, ok={ok}").render({"n": 3, "ok": True}) == "3 items, ok=True"


@pytest.mark.parametrize(("item", "reason"), [({}, "is missing"), ({"body": None}, "is null")])
def test_a_missing_or_null_field_names_the_field(item, reason):
    with pytest.raises(TemplateFieldError) as err:
        PromptTemplate("{body}").render(item)
    assert err.value.field == "body"
    assert err.value.reason == reason


def test_invalid_utf8_bytes_name_the_field():
    with pytest.raises(TemplateFieldError) as err:
        PromptTemplate("{body}").render({"body": b"\xff\xfe"})
    assert err.value.reason == "is not valid UTF-8"


@pytest.mark.parametrize("bad", ["{}", "{a!r}", "{a:>10}", "{unclosed"])
def test_unsupported_placeholders_are_refused_when_the_template_is_built(bad):
    with pytest.raises(ConfigurationError):
        PromptTemplate(bad)


def test_dict_and_list_values_are_inserted_as_compact_json_not_python_repr():
    template = PromptTemplate("Meta: {meta} Tags: {tags}")
    rendered = template.render({"meta": {"product": "a", "price": 1.5}, "tags": ["x", "é"]})
    assert rendered == 'Meta: {"product":"a","price":1.5} Tags: ["x","é"]'


def test_nested_placeholders_reach_into_nested_fields():
    template = PromptTemplate("Product: {meta.product}, size {meta.dims.w}")
    assert template.fields == ("meta.product", "meta.dims.w")
    assert template.render({"meta": {"product": "lamp", "dims": {"w": 3}}}) == "Product: lamp, size 3"
    # An item with a field literally named "meta.product" (a flattened CSV column) keeps it.
    assert PromptTemplate("{meta.product}").render({"meta.product": "flat"}) == "flat"


def test_a_missing_nested_field_is_named_by_its_whole_path():
    with pytest.raises(TemplateFieldError) as err:
        PromptTemplate("{meta.product}").render({"meta": {"name": "x"}})
    assert (err.value.field, err.value.reason) == ("meta.product", "is missing")


def test_an_index_placeholder_is_refused_saying_how_to_write_it_with_single_braces():
    with pytest.raises(ConfigurationError) as err:
        PromptTemplate("{meta[0]}")
    message = str(err.value)
    assert "{meta.product} for a nested field" in message and "{{ }} for literal braces" in message
    assert "{{{{" not in message
