from lamina.runtime.python_handler import KIND_INVOKE, KIND_RESULT, FrameDecoder, encode_frame


def test_round_trip_split_at_every_byte():
    frames = [encode_frame(KIND_INVOKE, {"id": "a", "deadline_ms": 5}, b'{"x": 1}'),
              encode_frame(KIND_RESULT, {"id": "a"}, b""),
              encode_frame(KIND_RESULT, {}, b"\x00" * 70000)]
    stream = b"".join(frames)
    for cut in (1, 7, 9, 13, len(frames[0]), len(stream) - 1):
        dec = FrameDecoder()
        got = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [(k, h) for k, h, _ in got] == [(KIND_INVOKE, {"id": "a", "deadline_ms": 5}),
                                               (KIND_RESULT, {"id": "a"}), (KIND_RESULT, {})]
        assert got[0][2] == b'{"x": 1}' and got[1][2] == b"" and len(got[2][2]) == 70000


def test_partial_frame_waits_for_rest():
    dec = FrameDecoder()
    data = encode_frame(KIND_RESULT, {"id": "b"}, b"body")
    assert dec.feed(data[:-1]) == []
    assert dec.feed(data[-1:]) == [(KIND_RESULT, {"id": "b"}, b"body")]
