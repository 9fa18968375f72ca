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
