import pytest

from reasonseg.core.errors import InputError
from reasonseg.core.instruction import sanitize_instruction
from reasonseg.grounding.query import parse_query


def test_sanitize_instruction_cleans_and_rejects():
    assert sanitize_instruction("  the\tdog\x00 \n") == "the dog"
    assert sanitize_instruction("die Straße".encode()) == "die Straße"
    for bad, match in [("", "empty"), ("   \n\t", "empty"), (b"\xff\xfe the dog", "UTF-8"),
                       ("x" * 100_000, "characters, limit"),
                       ("h\ufffd\ufffdllo", "UTF-8"), ("\udcff\udcfe the dog", "UTF-8")]:
        with pytest.raises(InputError, match=match):
            sanitize_instruction(bad, max_chars=500)


@pytest.mark.parametrize("invisible", ["\u200b\u200b\u200b", "\u200d\ufeff\u2060", "\x07\x1b \u200e",
                                       "\u3164\u3164", "\u2800", "\u0301\u0301"])
def test_instruction_of_only_invisible_characters_is_empty(invisible):
    with pytest.raises(InputError, match="empty"):
        sanitize_instruction(invisible)


def test_format_characters_are_dropped_inside_words():
    assert sanitize_instruction("the d\u200bo\u200dg") == "the dog"
    assert sanitize_instruction("\ufeffthe car\u202e") == "the car"


@pytest.mark.parametrize("text, phrase, cues", [
    ("the white truck parked on the street", "truck", {"colours": ("white",)}),
    ("Segment the pedestrian about to cross", "pedestrian", {}),
    ("the car left of the bus", "car", {"relation": ("left_of", "bus")}),
    ("segment the person standing next to the horse", "person", {"relation": ("near", "horse")}),
    ("show me the leftmost dog", "dog", {"spatial": ("left",)}),
    ("the second car from the left", "car", {"spatial": ("left",), "ordinal": 2}),
    ("all people", "people", {"plural": True}),
    ("please find the traffic light", "traffic light", {}),
    ("the biggest red bus", "bus", {"spatial": ("biggest",), "colours": ("red",)}),
    ("the people on the beach", "people", {"plural": True}),
    ("the animal on the left", "animal", {"spatial": ("left",)}),
    ("the man in the blue jacket", "man", {}),
    ("the two people walking on the beach", "people", {"plural": True, "count": 2}),
    ("segment both horses", "horses", {"plural": True, "count": 2}),
    ("the 3 cars on the left", "cars", {"plural": True, "count": 3, "spatial": ("left",)}),
    ("the truck parked behind the fence", "truck", {"relation": ("behind", "fence"), "count": None}),
    ("the bigger dog", "dog", {"spatial": ("biggest",)}),          # comparatives: the -est of the two
    ("the closer of the two cars", "cars", {"spatial": ("nearest",), "count": 2}),
    ("the car further away", "car", {"spatial": ("farthest",)}),
    ("the car that is closest to us", "car", {"spatial": ("nearest",)}),
    ("the second of the dogs", "dogs", {"ordinal": 2}),
])
def test_parse_query(text, phrase, cues):
    q = parse_query(text)
    assert q.phrase == phrase
    if "colours" in cues:
        assert q.colours == cues["colours"]
    if "spatial" in cues:
        assert q.spatial == cues["spatial"]
    if "ordinal" in cues:
        assert q.ordinal == cues["ordinal"]
    if "plural" in cues:
        assert q.plural is cues["plural"]
    if "count" in cues:
        assert q.count == cues["count"]
    if "relation" in cues:
        assert (q.relation.kind, q.relation.reference) == cues["relation"]
    else:
        assert q.relation is None


def _cues(q):
    return (q.phrase, q.colours, q.spatial, q.ordinal)


@pytest.mark.parametrize("text, phrase, any_class, excluded", [
    ("everything except the dog", "", True, [("dog", (), (), None)]),
    ("not the dog", "", True, [("dog", (), (), None)]),
    ("don't segment the dog", "", True, [("dog", (), (), None)]),
    ("Do not mask the dogs", "", True, [("dogs", (), (), None)]),
    ("ignore the dog", "", True, [("dog", (), (), None)]),
    ("anything but the bicycle", "", True, [("bicycle", (), (), None)]),
    ("all objects other than people", "", True, [("people", (), (), None)]),
    ("all vehicles except the truck and the bus", "vehicles", False, [("truck", (), (), None), ("bus", (), (), None)]),
    ("the vehicle that is not the truck", "vehicle", False, [("truck", (), (), None)]),
    ("the dog but not the cat", "dog", False, [("cat", (), (), None)]),
    ("all cars except the red one", "cars", False, [("", ("red",), (), None)]),      # one instance
    ("every person except the leftmost", "person", False, [("", (), ("left",), None)]),
    ("everything except the dog on the left", "", True, [("dog", (), ("left",), None)]),
    ("the small but fast car", "but fast car", False, []),                           # "but" of two adjectives
    ("the white truck parked on the street", "truck", False, []),
])
def test_exclusions_are_split_off_the_target(text, phrase, any_class, excluded):
    q = parse_query(text)
    assert (q.phrase, q.any_class) == (phrase, any_class)
    assert [_cues(e) for e in q.excluded] == excluded


@pytest.mark.parametrize("text, targets", [
    ("the dog and the bicycle", [("dog", (), (), None), ("bicycle", (), (), None)]),
    ("the dog, the bicycle and the truck", [("dog", (), (), None), ("bicycle", (), (), None), ("truck", (), (), None)]),
    ("the red car and the blue truck", [("car", ("red",), (), None), ("truck", ("blue",), (), None)]),
    ("cats or dogs", [("cats", (), (), None), ("dogs", (), (), None)]),
    # a relation makes it one target: "and" ends its clause, as before
    ("the man next to the car and the bike", [("man", (), (), None)]),
    ("the person riding a horse and carrying a flag", [("person", (), (), None)]),
])
def test_several_targets_each_keep_their_cues(text, targets):
    q = parse_query(text)
    assert [_cues(t) for t in (q, *q.also)] == targets


@pytest.mark.parametrize("text, phrase, attributes, relation", [
    ("the woman in the green coat", "woman", [("upper body", "green", None, "coat")], None),
    ("the man with grey hair", "man", [("head", "gray", None, "hair")], None),
    ("the kid in the striped shirt", "kid", [("upper body", None, "striped", "shirt")], None),
    ("the cyclist wearing a yellow helmet", "cyclist", [("head", "yellow", None, "helmet")], None),
    ("the girl in red", "girl", [("body", "red", None, "")], None),
    ("the man in a light blue jacket on the left", "man", [("upper body", "blue", None, "jacket")], None),
    # what she wears is no place: the relation after it still counts
    ("the woman in the green coat next to the bus", "woman", [("upper body", "green", None, "coat")], ("near", "bus")),
    ("the boy in a blue shirt holding a kite", "boy", [("upper body", "blue", None, "shirt")], ("near", "kite")),
    # the head of the phrase is the target; the clause only constrains it
    ("the girl holding the umbrella", "girl", [], ("near", "umbrella")),
    ("the cup she is drinking from", "cup", [], None),
    # an object clause without "that": the first noun is the target, the clause's subject is near it
    ("the bicycle the man is riding", "bicycle", [], ("near", "man")),
    ("the umbrella the girl is holding", "umbrella", [], ("near", "girl")),
    ("the man riding the bicycle", "man", [], ("on", "bicycle")),
    ("the man talking on the phone", "man", [], ("on", "phone")),
    ("the man with the dog", "man", [], ("near", "dog")),
    ("the red parking meter", "parking meter", [], None),  # an -ing noun is no clause
    ("the person waving", "person", [], None),
    # not worn: a colour before the noun is the object's own, "in the car" is a place
    ("the red coat", "coat", [], None),
    ("the man in the car", "man", [], None),
    ("the dog with the red collar", "dog", [], ("near", "collar")),
    # a side phrase after the reference is the target's ("on the right"), not part of the reference's name
    ("the woman holding cards on the right", "woman", [], ("near", "cards")),
    ("the car parked behind the truck on the left", "car", [], ("behind", "truck")),
    ("the man in a navy coat next to the bottle of wine", "man", [("upper body", "blue", None, "coat")],
     ("near", "bottle")),
])
def test_what_a_person_wears_is_an_attribute_not_the_target(text, phrase, attributes, relation):
    q = parse_query(text)
    assert q.phrase == phrase
    assert [(a.part, a.colour, a.pattern, a.item) for a in q.attributes] == attributes
    assert (q.relation.kind, q.relation.reference) == relation if relation else q.relation is None
