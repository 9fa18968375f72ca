import threading
import time

from reasonseg.runtime.frame_gate import LatestSlot


def test_latest_slot_keeps_only_newest():
    slot = LatestSlot()
    for i in range(10):
        slot.put(i)
    assert slot.take(timeout=0.1) == 9
    assert slot.dropped == 9
    assert slot.take(timeout=0.05) is None


def test_latest_slot_wakes_consumer_and_close():
    slot = LatestSlot()
    got = []
    t = threading.Thread(target=lambda: got.append(slot.take(timeout=2)))
    t.start()
    time.sleep(0.05)
    slot.put("frame")
    t.join(1)
    assert got == ["frame"]
    slot.close()
    assert slot.take(timeout=1) is None


def test_fair_gate_round_robin_newest_only():
    from reasonseg.runtime.frame_gate import FairGate

    gate = FairGate()
    for cam in ("front", "left", "right"):
        gate.add(cam)
    for i in range(50):  # the front camera floods, the others send one frame each
        gate.put("front", ("front", i))
    gate.put("left", ("left", 0))
    gate.put("right", ("right", 0))
    served = [gate.take(timeout=0.1) for _ in range(3)]
    assert [k for k, _ in served] == ["front", "left", "right"]
    assert served[0][1] == ("front", 49) and gate.dropped["front"] == 49
    gate.put("front", ("front", 50))
    gate.put("right", ("right", 1))
    assert [gate.take(0.1)[0] for _ in range(2)] == ["front", "right"]  # after right: front, then right again
    assert gate.take(timeout=0.05) is None
    gate.put("left", ("left", 1))
    gate.discard("left")
    assert gate.take(timeout=0.05) is None
    gate.close()
    assert gate.take(timeout=1) is None
