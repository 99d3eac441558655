from lamina.runtime.wire import KIND_INVOKE, KIND_RESULT, FrameDecoder, encode_frame


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


def test_channel_receives_whole_split_and_back_to_back_frames():
    """The runtime's Channel.recv: one frame per recv (the usual case), a frame in pieces (a large payload) and
    two frames in one read, then EOF."""
    import socket
    import threading

    from lamina.runtime.channel import Channel

    ours, theirs = socket.socketpair()
    channel = Channel(theirs.detach())
    big = encode_frame(KIND_INVOKE, {"id": "big"}, b"x" * 300_000)
    pair = encode_frame(KIND_INVOKE, {"id": "p1"}, b"1") + encode_frame(KIND_INVOKE, {"id": "p2"}, b"2")

    def send() -> None:
        ours.sendall(encode_frame(KIND_INVOKE, {"id": "one"}, b'{"a": 1}'))
        for i in range(0, len(big), 50_000):
            ours.sendall(big[i : i + 50_000])
        ours.sendall(pair)
        ours.close()

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert channel.recv() == (KIND_INVOKE, {"id": "one"}, b'{"a": 1}')
        kind, header, body = channel.recv()
        assert (kind, header, body) == (KIND_INVOKE, {"id": "big"}, b"x" * 300_000)
        assert channel.recv() == (KIND_INVOKE, {"id": "p1"}, b"1")
        assert channel.recv() == (KIND_INVOKE, {"id": "p2"}, b"2")
        assert channel.recv() is None
    finally:
        sender.join(10)
        channel.close()
