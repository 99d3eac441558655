import pytest

from lamina.functions.errors import AwsError
from lamina.functions.names import parse_function_name, resolve_qualifier


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


@pytest.mark.parametrize("raw", ["", "has space", "a/b", "x" * 65, "arn:aws:s3:::bucket"])
def test_rejected_forms_are_validation_errors(raw):
    with pytest.raises(AwsError) as err:
        parse_function_name(raw)
    assert err.value.code == "ValidationException" and err.value.status == 400


def test_qualifier_conflict():
    ref = parse_function_name("f:1")
    assert resolve_qualifier(ref, None) == "1"
    assert resolve_qualifier(ref, "1") == "1"
    with pytest.raises(AwsError) as err:
        resolve_qualifier(ref, "2")
    assert err.value.code == "InvalidParameterValueException"
