"""Parse a referring instruction into a target phrase and the cues that pick an instance.

Deliberately rule-based and conservative: it extracts what the local resolver
can act on (noun phrase, colour, spatial superlatives, ordinals, a relation to
a reference object, plurality). Anything else is left to the LLM, when one is
configured; nothing in the text is ever executed.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

COLOURS = ("white", "black", "gray", "grey", "silver", "red", "orange", "yellow", "green", "blue",
           "purple", "pink", "brown")

NOUN_COLOURS = {"orange"}  # colour words that are also things (COCO's orange)
# colour words that are a shade of a basic one ("navy" is dark blue): (basic word, shade)
COLOUR_VARIANTS = {"navy": ("blue", "dark"), "maroon": ("red", "dark"), "burgundy": ("red", "dark"),
                   "crimson": ("red", None), "scarlet": ("red", None), "olive": ("green", None),
                   "beige": ("brown", "light"), "khaki": ("brown", "light"), "violet": ("purple", None),
                   "golden": ("yellow", None), "grey": ("gray", None), "silver": ("gray", None)}


def basic_colour(word: str) -> tuple[str, str | None] | None:
    """(basic colour word, shade) a colour word means, or None: "navy" -> ("blue", "dark"), "red" -> ("red", None)."""
    if word in COLOUR_VARIANTS:
        return COLOUR_VARIANTS[word]
    return (word, None) if word in COLOURS else None

# superlative / positional word -> canonical cue
SPATIAL = {
    "left": "left", "leftmost": "left", "right": "right", "rightmost": "right",
    "nearest": "nearest", "closest": "nearest", "near": "nearest", "front": "nearest",
    "biggest": "biggest", "largest": "biggest", "big": "biggest", "large": "biggest",
    "smallest": "smallest", "small": "smallest", "little": "smallest", "tiny": "smallest",
    "farthest": "farthest", "furthest": "farthest", "far": "farthest", "distant": "farthest",
    "back": "farthest", "middle": "middle", "center": "middle", "centre": "middle", "central": "middle",
    "top": "top", "upper": "top", "highest": "top", "bottom": "bottom", "lower": "bottom", "lowest": "bottom",
    # comparatives: "the bigger dog" is the biggest of the two
    "bigger": "biggest", "larger": "biggest", "smaller": "smallest", "closer": "nearest", "nearer": "nearest",
    "frontmost": "nearest", "foremost": "nearest", "farther": "farthest", "further": "farthest", "higher": "top",
}
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5}

# relation marker -> relation kind; longest markers first so "to the left of" wins over "left"
_RELATIONS = [
    ("to the left of", "left_of"), ("left of", "left_of"), ("to the right of", "right_of"), ("right of", "right_of"),
    ("in front of", "in_front_of"), ("behind", "behind"), ("next to", "near"), ("beside", "near"), ("near", "near"),
    ("close to", "near"), ("on top of", "on"), ("riding", "on"), ("on", "on"), ("above", "on"), ("under", "under"),
    ("below", "under"), ("beneath", "under"), ("holding", "near"), ("with", "near"),
]
_RELATION_WORDS = {w for marker, _ in _RELATIONS for w in marker.split()[:1]}  # "in red next to the bus"
# words that end the target phrase without naming a reference we can use ("the cup she is drinking from")
_CLAUSE_BREAKS = ("she", "he", "they", "i", "we", "you", "it",
                  "that", "which", "who", "whose", "about", "parked", "standing", "sitting", "walking", "crossing",
                  "waiting", "going", "coming", "moving", "driving", "running", "lying", "looking", "wearing",
                  "in", "at", "by", "from", "of", "and", "is", "are", "to", "for", "as", "while", "where")
_LEAD = re.compile(
    r"^(?:(?:please|kindly|now|then|ok|okay|hey)\s+)*"
    r"(?:(?:can|could|would|will)\s+you\s+)?"
    r"(?:segment|find|show(?:\s+me)?|highlight|track|follow|locate|mask|detect|select|get|give\s+me|point\s+(?:at|to)|"
    r"where\s+(?:is|are)|watch|look\s+(?:at|for)|keep\s+an\s+eye\s+on|mark|outline|identify)?\s*",
)
_ARTICLES = {"away", "the", "a", "an", "this", "that", "these", "those", "my", "our", "your", "its", "one", "ones", "some",
             "any", "each", "every", "all", "both", "most", "only", "other", "another", "one's", "please"}
_PLURAL_CUES = {"all", "every", "each", "both", "these", "those", "two", "three", "four", "five", "several", "many"}
_COUNTS = {"both": 2, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}  # "the two people": exactly two
# "second car from the left", "the dog on the right", "the person in the middle"
_SIDE_PHRASE = re.compile(r"\b(?:from|on|at|in|to|towards)\s+the\s+(?:far\s+)?(left|right|top|bottom|middle|center|centre|front|back)\b")
# references that are places, not objects: "parked on the street" constrains nothing we detect
_SCENE_WORDS = {"street", "road", "sidewalk", "pavement", "ground", "grass", "field", "sky", "water", "lane", "crossing",
                "crosswalk", "floor", "beach", "snow", "sand", "background", "foreground", "picture", "image", "scene",
                "frame", "camera", "way", "highway", "intersection", "corner", "parking", "lot", "area", "side"}
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-]*")
# "everything except the dog", "the vehicles but not the truck", "not the dog": classes the target excludes
_EXCLUSION = re.compile(r"(?:^|\s)(?:except(?:\s+for)?|but(?:\s+not)?|other\s+than|apart\s+from|besides|excluding|"
                        r"(?:that|which|who)\s+(?:is|are)\s+not|and\s+not|not)\s+")
# "not the dog", "don't segment the dog", "ignore the dog": everything but it
_LEADING_NOT = re.compile(r"^(?:not|no|never|without|ignore|skip|exclude|leave\s+out|(?:do\s+not|don't|dont)"
                          r"(?:\s+(?:segment|mask|highlight|track|follow|show|select|detect|find|include|mark))?)\s+")
# a target phrase that names no class: every class the exclusion leaves
_ANY_CLASS = {"everything", "anything", "else", "object", "objects", "thing", "things", "stuff", "something", "rest",
              "whatever"}
_CONJUNCTION = re.compile(r"\s*(?:,|\band\b|\bor\b|&)\s*")
# What a person wears or has, and the part of the body it covers: "the woman in the green coat", "the man with
# grey hair", "the kid in the striped shirt", "the cyclist wearing a yellow helmet", "the girl in red" (body).
PERSON_PARTS = {
    **dict.fromkeys(("coat", "jacket", "shirt", "t-shirt", "tshirt", "top", "sweater", "jumper", "hoodie", "blouse",
                     "vest", "jersey", "sweatshirt", "cardigan", "parka", "anorak", "raincoat", "blazer", "fleece"),
                    "upper body"),
    **dict.fromkeys(("trousers", "pants", "jeans", "skirt", "shorts", "leggings", "tights"), "lower body"),
    **dict.fromkeys(("hair", "hat", "cap", "helmet", "beanie", "hood", "headscarf", "turban"), "head"),
    **dict.fromkeys(("dress", "suit", "uniform", "clothes", "clothing", "outfit", "overalls", "gown", "robe",
                     "costume"), "body"),
}
PATTERNS = {"striped": "striped", "stripy": "striped", "stripes": "striped", "patterned": "patterned",
            "checked": "patterned", "checkered": "patterned", "plaid": "patterned", "floral": "patterned",
            "spotted": "patterned", "dotted": "patterned", "plain": "plain"}
_WEARING = {"in", "wearing", "with", "has", "having", "dressed", "wears", "sporting"}
_SHADES = {"light": "light", "pale": "light", "pastel": "light", "dark": "dark", "deep": "dark"}
_PART_FILLERS = {"a", "an", "the", "his", "her", "their", "some", "bright", "long", "short",
                 "baseball", "hi-vis", "high-vis", "hooded", "knitted", "leather", "denim", "winter", "rain"}


@dataclass(frozen=True)
class Relation:
    kind: str            # left_of, right_of, near, on, under, behind, in_front_of
    reference: str       # noun phrase of the reference object


@dataclass(frozen=True)
class Attribute:
    """Something a person wears or has, by the part of the body it sits on: ("upper body", "green", None, "coat")."""

    part: str                    # head | upper body | lower body | body
    colour: str | None
    pattern: str | None          # striped | patterned | plain
    item: str                    # the word said ("coat", "hair"; "" for "in red")
    shade: str | None = None     # light ("light blue", "pale") | dark


@dataclass(frozen=True)
class Query:
    text: str                                   # the sanitised instruction
    phrase: str                                 # target noun phrase, cues removed ("truck")
    colours: tuple[str, ...] = ()
    spatial: tuple[str, ...] = ()               # canonical cues in reading order
    ordinal: int | None = None
    plural: bool = False
    count: int | None = None                    # "the two people": how many instances are meant
    relation: Relation | None = None
    also: tuple["Query", ...] = ()              # "the dog and the red truck": further targets, each with its cues
    excluded: tuple["Query", ...] = ()          # "except the dog" (a class), "except the red one" (an instance)
    any_class: bool = False                     # "everything except ...": the phrase names no class
    attributes: tuple[Attribute, ...] = ()      # "in the green coat", "with grey hair": parts of a person


def parse_query(text: str, *, exclusions: bool = True) -> Query:
    """`exclusions=False`: read "not" / "except" as plain words (when what follows names nothing known)."""
    lowered = text.lower().replace("’", "'")
    stripped = _LEAD.sub("", lowered.strip(" .!?"), count=1)
    head, excluded_parts = _split_exclusion(stripped) if exclusions else (stripped, ())
    excluded = tuple(q for q in (_parse_words(part, _WORD.findall(part), part) for part in excluded_parts)
                     if q.phrase or q.colours or q.spatial or q.ordinal)
    words = _WORD.findall(head)
    if excluded and all(w in _ANY_CLASS or w in _ARTICLES or w in _PLURAL_CUES for w in words):
        return Query(text=text, phrase="", plural=True, excluded=excluded, any_class=True)
    parts = _CONJUNCTION.split(head)
    if len(parts) > 1 and all(_WORD.search(part) for part in parts):  # "the dog and the bicycle"
        each = [_parse_words(part, _WORD.findall(part), part) for part in parts]
        if all(q.phrase and len(q.phrase.split()) <= 3 and q.relation is None for q in each):  # noun phrases
            return dataclasses.replace(each[0], text=text, also=tuple(each[1:]), excluded=excluded)
    return dataclasses.replace(_parse_words(text, words, head), excluded=excluded)


def _split_exclusion(text: str) -> tuple[str, tuple[str, ...]]:
    """(the target part, the excluded parts): "all vehicles except the truck and the bus"."""
    lead = _LEADING_NOT.match(text)
    if lead:
        head, rest = "", text[lead.end():]
    else:
        m = _EXCLUSION.search(text)
        if m is None or m.start() == 0:
            return text, ()
        head, rest = text[:m.start()], text[m.end():]
        if m.group(0).split() == ["but"] and not any(  # "all cars but", not "the small but fast car"
                w in _ANY_CLASS or w in _PLURAL_CUES for w in _WORD.findall(head)):
            return text, ()
    parts = tuple(part for part in _CONJUNCTION.split(rest) if _WORD.search(part))
    return (head, parts) if parts else (text, ())


def _parse_words(text: str, words: list[str], lowered: str) -> Query:
    """The target phrase and its cues from the instruction's words (exclusions already split off)."""
    if not words:
        return Query(text=text, phrase="")
    if "of" in words[1:]:  # "the closer of the two cars": the cue before "of", the thing after it
        k = words.index("of")
        if all(w in _ARTICLES or w in SPATIAL or w in ORDINALS for w in words[:k]):
            words = words[:k] + words[k + 1:]
    attributes, spans = _attributes(words)
    if spans:  # "the woman in the green coat next to the bus": what she wears is not where she is
        words = [w for k, w in enumerate(words) if not any(a <= k < b for a, b in spans)]
    target_words, relation = _split_relation(words)
    clause = words[len(target_words):]  # "the car that is furthest away": a superlative in its own clause
    if relation is None and clause[:1] in (["that"], ["which"], ["who"]) and clause[1:2] in (["is"], ["are"]):
        target_words += [w for w in clause[2:] if w in SPATIAL]
    plural = any(w in _PLURAL_CUES for w in target_words)
    colours, spatial, keep = [], [], []
    ordinal = count = None
    for w in target_words:
        if w in _COUNTS or (w.isdigit() and 1 < int(w) < 100):
            count = count or _COUNTS.get(w) or int(w)
            continue
        if w in _ARTICLES or w in _PLURAL_CUES:
            continue
        if basic_colour(w):
            colours.append(basic_colour(w)[0])
        elif w in SPATIAL:
            spatial.append(SPATIAL[w])
        elif w in ORDINALS:
            ordinal = ORDINALS[w]
        elif w.isdigit():
            plural = plural or int(w) > 1
        else:
            keep.append(w)
    spatial += [SPATIAL[m] for m in _SIDE_PHRASE.findall(lowered) if SPATIAL[m] not in spatial]
    if not keep and colours and colours[-1] in NOUN_COLOURS:  # "the orange": the fruit, not a colour cue
        keep.append(colours.pop())
    phrase = " ".join(keep)
    plural = plural or _looks_plural(keep)
    return Query(text=text, phrase=phrase, colours=tuple(colours), spatial=tuple(spatial), ordinal=ordinal,
                 plural=plural or count is not None, count=count, relation=relation, attributes=attributes)


def _attributes(words: list[str]) -> tuple[tuple[Attribute, ...], list[tuple[int, int]]]:
    """What the target wears or has ("in the green coat", "with grey hair", "in red"), and the word spans saying
    it. Only after a wearing word (in, with, wearing, ...), never as the first word: "the red coat" is a coat."""
    found: list[Attribute] = []
    spans: list[tuple[int, int]] = []
    for i, w in enumerate(words):
        if w not in _WEARING or i == 0:
            continue
        colour = pattern = shade = None
        j = i + 1
        while j < len(words) and (words[j] in _PART_FILLERS or basic_colour(words[j]) or words[j] in PATTERNS
                                  or words[j] in _SHADES or words[j] == "in"):
            if words[j] in _SHADES and colour is None:
                shade = _SHADES[words[j]]
            elif basic_colour(words[j]) and colour is None:
                colour, implied = basic_colour(words[j])
                shade = shade or implied
            elif words[j] in PATTERNS:
                pattern = pattern or PATTERNS[words[j]]
            j += 1
        item = words[j] if j < len(words) else ""
        part = PERSON_PARTS.get(item) or PERSON_PARTS.get(item.rstrip("s"))
        if part is not None and (colour or pattern):
            found.append(Attribute(part, colour, pattern, item, shade if colour else None))
            spans.append((i, j + 1))
        elif colour and w == "in" and item not in PERSON_PARTS and (not item or item in _CLAUSE_BREAKS
                                                                     or item in _WEARING or item in _RELATION_WORDS):
            found.append(Attribute("body", colour, pattern, "", shade))  # "the girl in red", "the man in black and ..."
            spans.append((i, j))
    return tuple(found), spans


def _split_relation(words: list[str]) -> tuple[list[str], Relation | None]:
    """Target words (the phrase up to a relation marker or clause) and the relation, if it names an object."""
    joined = " " + " ".join(words) + " "
    best: tuple[int, str, str] | None = None
    for marker, kind in _RELATIONS:
        idx = joined.find(f" {marker} ")
        if idx >= 0 and idx > 0 and (best is None or idx < best[0] or (idx == best[0] and len(marker) > len(best[1]))):
            best = (idx, marker, kind)
    cut = len(words)
    reduced = False  # "the bicycle the man is riding": an object clause with no "that"
    for i, w in enumerate(words):
        named = any(_names_thing(x) for x in words[:i])
        if i > 0 and (w in _CLAUSE_BREAKS or (named and _is_participle(w))):
            cut = i
            break
        if (w in _CLAUSE_ARTICLES and i > 1 and _names_thing(words[i - 1]) and i + 1 < len(words)
                and _names_thing(words[i + 1])):  # noun, then an article: "the bicycle | the man is riding"
            cut, reduced = i, True
            break
    if reduced:  # its subject is near the target (the man riding the bicycle): a reference, if we can see it
        subject = []
        for w in words[cut + 1:]:
            if w in _CLAUSE_BREAKS or w in {"is", "are", "was", "were", "has", "had"} or _is_participle(w):
                break
            if _names_thing(w):
                subject.append(w)
        usable = subject and subject[-1] not in _SCENE_WORDS
        return words[:cut], Relation("near", " ".join(subject)) if usable else None
    if best is not None:
        rel_start = len(joined[: best[0]].split())
        if rel_start <= cut + 1:  # "the person standing next to the horse"
            ref_words = joined[best[0] + len(best[1]) + 2:].split()
            ref_keep = []
            for w in ref_words:
                # "the bottle on the left" after "holding": the side phrase is the target's, not the reference's
                if ref_keep and (w in _CLAUSE_BREAKS or w in _PREPOSITIONS):
                    break
                if w not in _ARTICLES and not basic_colour(w) and w not in SPATIAL:
                    ref_keep.append(w)
            target = words[:min(rel_start, cut)]
            if target:
                # "on the beach", "on the left": the phrase ends here, but there is no object to relate to
                usable = ref_keep and ref_keep[-1] not in _SCENE_WORDS
                return target, Relation(best[2], " ".join(ref_keep)) if usable else None
    return words[:cut], None


# -ing words that are things, not actions ("the parking meter", "the building on the left")
_ING_NOUNS = {"building", "ceiling", "clothing", "painting", "ring", "king", "wing", "thing", "string", "swing",
              "railing", "awning", "parking", "morning", "evening", "sibling", "duckling", "pudding", "icing",
              "frosting", "dressing", "bedding", "sling", "spring", "ping", "bowling", "sing", "wedding", "landing",
              "crossing", "opening", "stuffing", "topping", "filling", "seating", "lighting", "housing", "fencing"}
_CLAUSE_ARTICLES = {"the", "a", "an", "his", "her", "their", "my", "your", "our"}
_PREPOSITIONS = {w for marker, _ in _RELATIONS for w in marker.split()} | {
    "in", "at", "by", "from", "of", "to", "for", "as", "into", "onto", "over", "through", "across", "along",
    "around", "toward", "towards", "up", "down", "off", "out", "about", "than", "like", "against", "between"}


def _is_participle(w: str) -> bool:
    """A verb's -ing form ("talking", "waving"), which starts a clause about the target."""
    return w.endswith("ing") and len(w) > 4 and w not in _ING_NOUNS


def _names_thing(w: str) -> bool:
    """A content word that can name the target (not an article, a cue, a count or a clause word)."""
    return not (w in _ARTICLES or w in _PLURAL_CUES or basic_colour(w) or w in SPATIAL or w in ORDINALS
                or w in _COUNTS or w in _CLAUSE_BREAKS or w in _PREPOSITIONS or w.isdigit())


def _looks_plural(words: list[str]) -> bool:
    if not words:
        return False
    head = words[-1]
    if head in {"people", "persons", "pedestrians", "children", "men", "women", "cars", "vehicles"}:
        return True
    return head.endswith("s") and not head.endswith(("ss", "us", "is", "bus")) and len(head) > 3 and head not in {
        "glasses", "scissors", "skis", "pants", "jeans", "clothes"}
