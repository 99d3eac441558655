"""UDP listener documents: defaults, round trips and 400s that name the field (gateway/udp/config.py),
and the CLI's request building (cli/udp.py)."""

from __future__ import annotations

import pytest
import typer

from lamina.cli.udp import build_request, parse_destination
from lamina.gateway.udp.config import ConfigError, parse_listener


def parse(body: object):
    return parse_listener(body, listener_id="udp-1", default_host="127.0.0.1", created_at="2026-01-01T00:00:00.000Z")


def test_defaults():
    cfg = parse({"Destinations": [{"Function": "f"}]})
    assert (cfg.name, cfg.host, cfg.port, cfg.networks) == ("udp-1", "127.0.0.1", 0, ())
    d = cfg.destinations[0]
    assert (d.type, d.function, d.formatter, d.name) == ("function", "f", "base64", "udp-1-1")
    assert (d.batching.count, d.batching.timeout_s, d.batching.size_mb) == (None, 0.0, None)
    assert d.tenant_id is None and d.tenant_expression is None


def test_round_trip_through_doc():
    body = {"Name": "dns", "Host": "::", "Port": 5353,
            "ClientRestrictions": {"Networks": ["10.1.2.3/8", "2001:db8::1/32", "192.0.2.9"]},
            "Destinations": [
                {"Type": "function", "Function": "f:live", "Name": "a", "Formatter": "hex",
                 "Batching": {"Count": 10, "TimeoutInSeconds": 0.5, "SizeInMb": 1.5}, "MaxInFlightBatches": 4,
                 "Arguments": {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "hex"}},
                {"Type": "function-async", "Function": "g", "Arguments": {"TenantId": "blue"}},
                {"Type": "log", "Arguments": {"MaxLinesPerSecond": 5}}]}
    cfg = parse(body)
    # Networks are normalised to their block.
    assert cfg.networks == ("10.0.0.0/8", "2001:db8::/32", "192.0.2.9/32")
    assert parse(cfg.doc()) == cfg
    assert cfg.destinations[2].max_lines_per_s == 5 and cfg.destinations[1].tenant_id == "blue"


@pytest.mark.parametrize(("body", "field", "words"), [
    ([], "(body)", "JSON object"),
    ({}, "Destinations", "non-empty list"),
    ({"Destinations": []}, "Destinations", "non-empty list"),
    ({"Destinations": [{"Function": "f"}], "Port": 70000}, "Port", "0 (pick a free port) to 65535"),
    ({"Destinations": [{"Function": "f"}], "Port": "53"}, "Port", "integer"),
    ({"Destinations": [{"Function": "f"}], "Port": True}, "Port", "integer"),
    ({"Destinations": [{"Function": "f"}], "Host": "localhost"}, "Host", "IP address"),
    ({"Destinations": [{"Function": "f"}], "Name": "a b"}, "Name", "letters, digits"),
    ({"Destinations": [{"Function": "f"}], "Colour": 1}, "Colour", "unknown field"),
    ({"Destinations": [{"Function": "f"}], "ClientRestrictions": {"Networks": ["10.0.0.0/33"]}},
     "ClientRestrictions.Networks[0]", "CIDR"),
    ({"Destinations": [{"Function": "f"}], "ClientRestrictions": {"Networks": "10.0.0.0/8"}},
     "ClientRestrictions.Networks", "list"),
    ({"Destinations": [{"Function": "f"}], "ClientRestrictions": {"Domains": []}},
     "ClientRestrictions.Domains", "unknown field"),
    ({"Destinations": [{"Type": "sqs", "Function": "f"}]}, "Destinations[0].Type", "function, function-async, log"),
    ({"Destinations": [{"Type": "function"}]}, "Destinations[0].Function", "names the function"),
    ({"Destinations": [{"Function": "f"}, {"Function": "f", "Formatter": "rot13"}]}, "Destinations[1].Formatter",
     "base64"),
    ({"Destinations": [{"Function": "f", "Batching": {"Count": 0}}]}, "Destinations[0].Batching.Count", "1 to"),
    ({"Destinations": [{"Function": "f", "Batching": {"Count": 2.5}}]}, "Destinations[0].Batching.Count", "integer"),
    ({"Destinations": [{"Function": "f", "Batching": {"TimeoutInSeconds": -1}}]},
     "Destinations[0].Batching.TimeoutInSeconds", "seconds"),
    ({"Destinations": [{"Function": "f", "Batching": {"SizeInMb": 7}}]}, "Destinations[0].Batching.SizeInMb",
     "RequestResponse payload limit"),
    ({"Destinations": [{"Type": "function-async", "Function": "f", "Batching": {"SizeInMb": 2}}]},
     "Destinations[0].Batching.SizeInMb", "Event payload limit"),
    ({"Destinations": [{"Function": "f", "Batching": {"Window": 1}}]}, "Destinations[0].Batching.Window",
     "unknown field"),
    ({"Destinations": [{"Function": "f", "MaxInFlightBatches": 0}]}, "Destinations[0].MaxInFlightBatches", "1 to"),
    ({"Destinations": [{"Function": "f", "Arguments": {"TenantId": "a", "TenantIdExpression": "[0]"}}]},
     "Destinations[0].Arguments", "not both"),
    ({"Destinations": [{"Function": "f", "Arguments": {"TenantId": "bad\ttenant"}}]},
     "Destinations[0].Arguments.TenantId", "tenant id"),
    ({"Destinations": [{"Function": "f", "Arguments": {"TenantIdExpression": "[0:"}}]},
     "Destinations[0].Arguments.TenantIdExpression", "column 4"),
    ({"Destinations": [{"Function": "f", "Arguments": {"TenantIdExpression": "[0]", "TenantIdFormatter": "x"}}]},
     "Destinations[0].Arguments.TenantIdFormatter", "base64"),
    ({"Destinations": [{"Type": "log", "Arguments": {"MaxLinesPerSecond": 0}}]},
     "Destinations[0].Arguments.MaxLinesPerSecond", "1 to 100000"),
    ({"Destinations": [{"Function": "f", "Name": "x"}, {"Function": "g", "Name": "x"}]}, "Destinations[1].Name",
     "used twice"),
])
def test_errors_name_the_field(body, field, words):
    with pytest.raises(ConfigError) as info:
        parse(body)
    assert info.value.field == field
    assert words.lower() in str(info.value).lower()
    assert str(info.value).startswith(field + ": ")


def test_cli_destinations():
    assert parse_destination("function:f") == {"Type": "function", "Function": "f"}
    arn = "arn:aws:lambda:us-east-1:000000000000:function:f:live"
    assert parse_destination("function-async:" + arn) == {"Type": "function-async", "Function": arn}
    assert parse_destination("log") == {"Type": "log"}
    for bad in ("function", "function:", "sqs:q", "log:x"):
        with pytest.raises(typer.BadParameter):
            parse_destination(bad)


def test_cli_request_is_a_valid_listener():
    body = build_request(port=5353, host="0.0.0.0", name="dns", destinations=["function:f", "log"],
                         allow=["10.0.0.0/8"], batch_count=10, batch_timeout=0.1, batch_size_mb=1.0,
                         formatter="hex", tenant_id=None, tenant_expression="[0:2]", tenant_formatter="hex",
                         max_in_flight=8, log_rate=3)
    cfg = parse(body)
    fn, logd = cfg.destinations
    assert (cfg.port, cfg.host, cfg.name, cfg.networks) == (5353, "0.0.0.0", "dns", ("10.0.0.0/8",))
    assert (fn.batching.count, fn.batching.timeout_s, fn.batching.size_mb) == (10, 0.1, 1.0)
    assert (fn.tenant_expression, fn.tenant_formatter, fn.max_in_flight, fn.formatter) == ("[0:2]", "hex", 8, "hex")
    assert (logd.type, logd.max_lines_per_s, logd.formatter) == ("log", 3, "hex")
    with pytest.raises(typer.BadParameter):
        build_request(port=0, host=None, name=None, destinations=[], allow=[], batch_count=None, batch_timeout=None,
                      batch_size_mb=None, formatter=None, tenant_id=None, tenant_expression=None,
                      tenant_formatter=None, max_in_flight=None, log_rate=None)
