import pytest

from lamina.functions.errors import AwsError
from lamina.functions.names import NAMESPACED, parse_function_name, resolve_qualifier, set_home


@pytest.fixture(autouse=True)
def anywhere():
    """The parse alone: no server's region or account to compare ARNs with."""
    set_home(None)
    yield
    set_home(None)


@pytest.mark.parametrize("raw,name,qualifier", [
    ("my-fn", "my-fn", None),
    ("my-fn:prod", "my-fn", "prod"),
    ("my-fn:$LATEST", "my-fn", "$LATEST"),
    ("123456789012:function:my-fn", "my-fn", None),
    ("arn:aws:lambda:us-east-1:000000000000:function:my_fn", "my_fn", None),
    ("arn:aws:lambda:eu-west-2:000000000000:function:my_fn:7", "my_fn", "7"),
])
def test_accepted_forms(raw, name, qualifier):
    ref = parse_function_name(raw)
    assert (ref.name, ref.qualifier) == (name, qualifier)


@pytest.mark.parametrize("raw", ["", "has space", "a/b", "arn:aws:s3:::bucket"])
def test_rejected_forms_are_validation_errors(raw):
    with pytest.raises(AwsError) as err:
        parse_function_name(raw)
    assert err.value.code == "ValidationException" and err.value.status == 400


def test_name_over_64_characters():
    """AWS's recorded answer: the validation wording under InvalidParameterValueException (CreateFunction's shape);
    the reads' NamespacedFunctionName has no such limit (the function is simply not found)."""
    with pytest.raises(AwsError) as err:
        parse_function_name("x" * 65)
    assert err.value.code == "InvalidParameterValueException"
    assert err.value.message == (f"1 validation error detected: Value '{'x' * 65}' at 'functionName' failed to "
                                 "satisfy constraint: Member must have length less than or equal to 64")
    assert parse_function_name("x" * 65, shape=NAMESPACED).name == "x" * 65


def test_every_problem_in_one_error():
    with pytest.raises(AwsError) as err:
        parse_function_name("arn:aws:lambda:nowhere:000000000000:function:f" + "a" * 140, qualifier="q" * 129)
    assert err.value.message.startswith("3 validation errors detected: Value '" + "q" * 129 + "' at 'qualifier'")


def test_other_region_or_account():
    set_home("us-east-1", "000000000000")
    with pytest.raises(AwsError) as err:
        parse_function_name("arn:aws:lambda:eu-west-1:000000000000:function:f")
    assert (err.value.code, err.value.status) == ("ResourceNotFoundException", 404)
    assert err.value.message == "Functions from 'eu-west-1' are not reachable in this region ('us-east-1')"
    with pytest.raises(AwsError) as err:
        parse_function_name("123456789012:function:f")
    assert (err.value.code, err.value.status) == ("AccessDeniedException", 403)


def test_qualifier_conflict():
    ref = parse_function_name("f:1")
    assert resolve_qualifier(ref, None) == "1"
    assert resolve_qualifier(ref, "1") == "1"
    with pytest.raises(AwsError) as err:
        resolve_qualifier(ref, "2")
    assert err.value.code == "InvalidParameterValueException"
