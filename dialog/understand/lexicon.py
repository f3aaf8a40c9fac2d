"""The vocabulary of message understanding: the words and patterns for genres, moods, negation,
references to the last suggestions ("the second one"), title triggers ("loved", "seen"), years and
decades, audiences, prompt injection and start over; and the genre-word lookups built on them.

Everything the rules (``dialog.understand.rules``) and the title finder (``dialog.understand.finder``)
recognise is spelled here, so teaching them a new word is an edit to this file only.
"""
from __future__ import annotations

import re


def words_re(pattern: str) -> re.Pattern:
    """Any of the ``|``-separated words or phrases of ``pattern`` as whole words, any case."""
    return re.compile(r"\b(" + pattern + r")\b", re.I)


# ---- genres and moods ---------------------------------------------------------------------------

GENRE_PATTERNS: dict[str, str] = {
    "Action": r"action|action-packed|explosions?|martial arts|shoot-?outs?|acción",
    "Adventure": r"adventures?|adventurous|quests?|swashbuckl\w*|aventure|aventura|abenteuer",
    "Animation": r"animat(?:ed|ion)|cartoons?|anime|pixar|animación|dessin animé|zeichentrick",
    "Children": r"children'?s|kids'? movies?|kid-friendly|child-friendly|family-friendly",
    "Comedy": r"comed(?:y|ies)|funny|funnier|hilarious|laughs?|humou?r(?:ous)?|comic|rom-?coms?|"
              r"comédie|comedia|komödie|lustig|drôle|gracios[ao]|😂|🤣|😆",
    "Crime": r"crime|criminals?|gangsters?|mafia|mob|heists?|cops?|policier|krimi",
    "Documentary": r"documentar(?:y|ies)|docs?|documentaire|documental|dokumentar\w*",
    "Drama": r"dramas?|dramatic|drame|dramático",
    "Fantasy": r"fantasy|fantasies|magic(?:al)?|wizards?|dragons?|fairy ?tales?|fantastique|fantasía",
    "Film-Noir": r"noir|film-noir",
    "Horror": r"horror|horrors|scary|scarier|terrifying|frightening|slashers?|zombies?|vampires?|"
              r"creepy|spooky|horreur|terror|gruselig|😱|👻|🧟",
    "IMAX": r"imax",
    "Musical": r"musicals?|singing|comédie musicale",
    "Mystery": r"myster(?:y|ies)|mysterious|whodunn?its?|detectives?|misterio|mystère",
    "Romance": r"romance|romances|romantic|love stor(?:y|ies)|rom-?coms?|romantique|romántic[ao]|❤️|💕",
    "Sci-Fi": r"sci-?fi|sci fi|science[- ]fiction|outer space|space|futuristic|robots?|time travel|"
              r"dystopi(?:a|an)|ciencia ficción|🚀|👽|🤖",
    "Thriller": r"thrillers?|suspense(?:ful)?|thrilling|tense|nail-?biters?|suspenso",
    "War": r"war|wartime|ww2|wwii|world war|soldiers?|guerre|guerra|krieg",
    "Western": r"westerns?|cowboys?|wild west|🤠",
}
GENRE_NAMES = list(GENRE_PATTERNS)
# one named group per genre (g0, g1, ...), so a match says which genre it is
GENRE_RE = re.compile("|".join(r"(?<![\w-])(?P<g%d>%s)(?![\w-])" % (i, GENRE_PATTERNS[g])
                               for i, g in enumerate(GENRE_NAMES)), re.I)
COMEDY_ALSO_RE = re.compile(r"rom-?coms?", re.I)  # rom-com = Romance + Comedy

MOOD_WORDS = ("dark", "gritty", "light", "lighthearted", "light-hearted", "feel-good", "feel good",
              "uplifting", "heartwarming", "sad", "tearjerker", "emotional", "moving", "thought-provoking",
              "mind-bending", "mindbending", "twist", "twists", "twisty", "clever", "smart", "quirky",
              "weird", "surreal", "violent", "gory", "slow", "intense", "epic", "cozy", "inspiring",
              "nostalgic", "psychological", "philosophical", "satirical", "satire", "atmospheric",
              "heist", "superhero", "zombie", "true story", "based on a true story", "twist ending",
              "coming of age", "coming-of-age", "cult", "classic", "quotable", "stylish", "visually stunning",
              "beautiful", "bleak", "cheesy", "silly", "witty", "dialogue", "action-packed", "suspenseful",
              "adult", "family", "historical", "biographical", "biopic", "musical", "space", "aliens",
              "robots", "time travel", "dystopian", "post-apocalyptic", "revenge", "friendship", "love")
MOOD_RE = re.compile(r"(?<![\w-])(%s)(?![\w-])" % "|".join(
    re.escape(m) for m in sorted(MOOD_WORDS, key=len, reverse=True)), re.I)


def genre_of_word(word: str) -> str | None:
    """The genre (Movielens spelling) a genre word stands for: "scary" -> "Horror"."""
    m = GENRE_RE.fullmatch(word.strip())
    if not m:
        return None
    return next(GENRE_NAMES[int(k[1:])] for k, v in m.groupdict().items() if v is not None)


def canonical_genre(name: str, catalog_genres: list[str]) -> str | None:
    """A genre word or name -> the catalogue's genre name, or None."""
    key = str(name).strip().lower()
    by_lower = {g.lower(): g for g in catalog_genres}
    if key in by_lower:
        return by_lower[key]
    mapped = genre_of_word(key)
    if mapped is None:
        return None
    if mapped.lower() in by_lower:
        return by_lower[mapped.lower()]
    if mapped == "Children" and "children's" in by_lower:       # ml-100k spells it so
        return by_lower["children's"]
    return None


# ---- negation -----------------------------------------------------------------------------------

NEG_RE = words_re(r"no|not|without|nothing|none|never|don'?t|do not|hate[sd]?|avoid|except|skip|"
                  r"less|isn'?t|aren'?t|neither|nor|sick of|tired of|enough|dislike[sd]?|sans|pas de|"
                  r"sin|kein\w*|too much|too many|too")
# a negated phrase, up to the next punctuation: left out of the text query
NEGATED_PHRASE_RE = re.compile(r"\b(?:no|not|without|nothing|never|avoid|except|skip|don'?t (?:want|like))\b"
                               r"[^.,;!?]*", re.I)

# ---- references to the last suggestions ---------------------------------------------------------

ORDINALS = {"first": 0, "1st": 0, "second": 1, "2nd": 1, "third": 2, "3rd": 2, "fourth": 3, "4th": 3,
            "fifth": 4, "5th": 4, "last": -1, "top": 0}
ORDINAL_RE = re.compile(r"\b(?:the\s+)?(first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last)"
                        r"(?:\s+(?:one|movie|film|suggestion|pick|title))?\b|(?:number|#|no\.)\s*([1-5])\b", re.I)
EXPLAIN_RE = words_re(r"why|explain|what makes|tell me (?:more )?about|how come|reason|"
                      r"what'?s (?:so )?(?:good|great|special) about|what (?:is|'?s) (?:it|that one|this one) about")
REJECT_ALL_RE = words_re(r"none of (?:these|those|them|the above)|not (?:these|those|them)|"
                         r"something else|other (?:ones|options|suggestions)|nope|no thanks|no,? thank you|"
                         r"not interested|don'?t like (?:any|these|those|them)|didn'?t like (?:any|these|those)")
SEEN_ALL_RE = words_re(r"(?:seen|watched|saw) (?:them all|all of (?:them|these|those)|all (?:of )?(?:these|those|them)|"
                       r"(?:these|those|them) all|(?:both|all) of (?:them|these|those)|every one)")
SEEN_IT_RE = words_re(r"(?:already |i'?ve |have |i )?(?:seen|watched|saw) (?:it|that|this|that one|this one)|"
                      r"already seen|seen already|already watched")
SEEN_REF_RE = words_re(r"seen|watched|saw|already")
DISLIKE_REF_RE = words_re(r"not|no|nope|isn'?t|wasn'?t|hate|didn'?t like|don'?t like|boring|awful|bad|"
                          r"meh|nah|doesn'?t appeal|not for me|skip")
# A reaction to the movies the other side just named, by pronoun ("yes I loved that one", "those
# were great", "not a fan of it"): it picks them out only when that turn named few (the rules' limit).
REACTION_MAX_NAMED = 3
PRONOUN_REF_RE = words_re(r"it|that one|this one|that|those|these|them|both|they|either|each")
POSITIVE_RE = words_re(r"lov(?:e|ed|es)|lik(?:e|ed|es)|enjoy(?:ed|s)?|adored?|great|good|amazing|awesome|fun|"
                       r"favou?rites?|excellent|fantastic|brilliant|classic|hilarious|so funny|best|"
                       r"more like (?:it|that|those|them)")
NEGATIVE_RE = words_re(r"didn'?t (?:like|love|enjoy)|did not (?:like|enjoy)|don'?t (?:like|love)|hated?|boring|"
                       r"awful|terrible|bad|not (?:a fan|for me|good|great|my thing|that good)|wasn'?t (?:good|great)|"
                       r"overrated|disappointing|meh")
# these two read lower-cased text
LIKE_WORD_RE = re.compile(r"\bmore like|\blike\b|\blove|\benjoy")
NOT_LIKE_RE = re.compile(r"\b(?:don'?t|didn'?t|not|never)\s+(?:really\s+)?(?:like|love|enjoy)")

# ---- titles -------------------------------------------------------------------------------------

TITLE_TRIGGER_RE = re.compile(
    r"\b(loved|love|liked|like|enjoyed|enjoy|adored?|similar to|such as|as good as|fan of|"
    r"favou?rite(?: movie| film)? (?:is|was)|seen|watched|saw|hated|hate|disliked|"
    r"didn'?t like|did not like|can'?t stand|reminds? me of|in the vein of|along the lines of|"
    r"tell me (?:more )?about|what about|how about|why|what is|what's)\s+", re.I)
# what a trigger says about the title after it; the first pattern that matches wins
TRIGGER_KINDS = [("explain", r"tell me|why|what is|what's"), ("mention", r"what about|how about"),
                 ("disliked", r"hated?|disliked|didn'?t like|did not like|can'?t stand"),
                 ("seen", r"seen|watched|saw"), ("liked", r".")]
TRIGGER_NEGATED_RE = re.compile(r"(don'?t|do not|didn'?t|never|not)\s*$")   # "I don't like X" (lower case)
GENERIC_START = {"something", "anything", "a", "an", "movie", "movies", "film", "films", "it", "that",
                 "this", "them", "those", "these", "more", "stuff", "one", "ones", "some", "to", "me",
                 "you", "what", "how", "watching", "all", "any", "other", "another", "such", "your",
                 "my", "his", "her", "their", "its", "lots", "many", "much", "very", "really", "so",
                 "first", "second", "third", "fourth", "fifth", "last", "number", "the first", "too",
                 "i", "we", "he", "she", "they", "here", "there", "and", "or", "but", "from", "in",
                 "on", "with", "by", "about", "of", "at", "is", "was", "be", "are", "well", "yes",
                 "no", "not", "ok", "okay", "either", "neither", "both", "most", "least", "each"}
CLAUSE_END_RE = re.compile(r"[.;!?\n]|\s(?:but|though|although|because|which|who|so|if|please|"
                           r"maybe|except|only|however|then)\s", re.I)
PRONOUN_STARTS = {"i", "i'm", "i'd", "i've", "i'll", "im", "id", "ive", "we", "we're", "you", "my", "can",
                  "could", "would", "please", "hi", "hello", "hey", "thanks", "ok", "okay", "yes", "no",
                  "what", "why", "how", "something", "anything", "maybe", "sure", "great", "give", "show",
                  "recommend", "suggest", "tell", "find", "looking", "want", "need", "not", "nothing", "also"}
YEAR_TITLE_RE = re.compile(r"\((1[89]\d\d|20\d\d)\)")      # "It Follows (2014)": a title with its year
QUOTED_RE = re.compile(r"[\"“”«]([^\"“”«»]{2,80})[\"“”»]")
CAP_RUN_RE = re.compile(r"\b([A-Z][\w'’:-]*(?:\s+(?:of|the|a|an|and|in|on|to|for|with|at|de|la|le|du|"
                        r"[A-Z0-9][\w'’:-]*))*)")
# What is said right after a title that no trigger word introduced ("Die Hard was boring to me",
# "Memento blew my mind"): the verdict follows the title.
AFTER_TITLE_RE = re.compile(
    r"^[\s,]*(?:(?:was|is|were|are|felt|seemed|looked)\s+)?(?:(?:a bit|kind of|pretty|really|way|so|just|"
    r"quite|rather|far|one of)\s+)*(?:(?P<neg>boring|dull|awful|bad|terrible|overrated|disappointing|a letdown|"
    r"too \w+|not (?:for me|my (?:thing|cup of tea)|good|great|that good)|meh)|(?P<pos>great|amazing|awesome|"
    r"brilliant|fantastic|excellent|wonderful|fun|the best|a masterpiece|my favou?rites?|perfect|"
    r"blew my mind|made me (?:cry|laugh)))\b", re.I)

# ---- what the message is about, beyond movies ---------------------------------------------------

INJECTION_RE = re.compile(
    r"ignore (?:all |your |any |the |previous |prior |above |earlier )*(?:instructions|rules|prompts?|"
    r"guidelines)|system prompt|your prompt|your instructions|developer mode|jailbreak|you are now|"
    r"pretend (?:to be|you are)|act as|disregard (?:all |your |the )*(?:instructions|rules)|"
    r"reveal your|print your|repeat (?:the|your) (?:text|words|prompt)|DAN\b", re.I)
NONEXISTENT_RE = re.compile(r"(?:does ?n[o']t|doesn'?t|do not|never) exists?|made[- ]up|fake movie|"
                            r"imaginary movie|invent(?:ed)? (?:a )?movie|non-?existent", re.I)
RESET_RE = words_re(r"start over|start again|reset|forget (?:everything|all that|it all)|new search|"
                    r"from scratch")

# ---- years --------------------------------------------------------------------------------------

YEAR = r"1[89]\d\d|20\d\d"
DECADE_WORDS = {"twenties": 1920, "thirties": 1930, "forties": 1940, "fifties": 1950, "sixties": 1960,
                "seventies": 1970, "eighties": 1980, "nineties": 1990, "noughties": 2000,
                "two-thousands": 2000, "2000s": 2000, "2010s": 2010}
# groups: qualifier, century ("19"), decade digit, short decade ("'80s"), decade word ("eighties")
DECADE_RE = re.compile(r"\b(early|late|mid|mid-)?[\s-]*(?:the\s+)?(?:(1[89]|20)(\d)0'?s|'?(\d)0'?s|(%s))\b"
                       % "|".join(w for w in DECADE_WORDS if w.isalpha()), re.I)


def _bound_re(words: str) -> re.Pattern:
    """One of ``words``, then a year or a decade ("after 1990", "before the 1980s").
    Groups: the word, the year, "s" for a decade."""
    return re.compile(r"\b(" + words + r")\s+(?:the\s+)?(" + YEAR + r")(s)?\b", re.I)


AFTER_RE = _bound_re(r"after|since|newer than|later than|not older than|no older than|nothing older than|"
                     r"from after|post|at least from|made after|released after|not before|younger than|"
                     r"from|in or after")
BEFORE_RE = _bound_re(r"before|older than|earlier than|prior to|pre|not newer than|no newer than|"
                      r"nothing newer than|nothing after|until|up to|made before|released before|not after|"
                      r"no later than")
AFTER_EXCLUSIVE = ("after", "later than", "made after", "released after", "newer than", "younger than",
                   "from after", "post")      # "after 1990" starts at 1991; "since 1990" at 1990
BEFORE_EXCLUSIVE = ("before", "older than", "earlier than", "prior to", "pre", "made before", "released before")
BETWEEN_RE = re.compile(rf"\b(?:between|from)\s+({YEAR})\s+(?:and|to|-|–)\s+({YEAR})\b"
                        rf"|\b({YEAR})\s*[-–]\s*({YEAR})\b", re.I)
BARE_YEAR_RE = re.compile(rf"\b(?:in|from|of|year)\s+({YEAR})\b", re.I)
RECENT_RE = words_re(r"recent|new|newer|modern|latest|current|contemporary|not (?:too )?old|"
                     r"nothing (?:too )?old")
OLD_RE = words_re(r"old|older|classic|vintage|black and white|golden age|not (?:too )?(?:new|recent)|"
                  r"nothing (?:too )?(?:new|recent)")
# these two read lower-cased text
NOT_OLD_RE = re.compile(r"\b(too old|nothing (?:too )?old|not (?:too )?old)\b")
NOT_NEW_RE = re.compile(r"\b(too (?:new|recent)|not (?:too )?(?:new|recent))\b")

# ---- audience -----------------------------------------------------------------------------------

AUDIENCE_RE = re.compile(r"\b(?:for|with) (?:my |the |our |a )?(kids?|children|family|little ones|son|daughter|"
                         r"toddlers?|teens?|teenagers?|grandkids|parents|grandparents|adults?|date)\b|"
                         r"\b(family|kid-friendly|child-friendly|family-friendly|date night|grown-?ups?)\b", re.I)
KIDS_WORDS = ("kid", "kids", "children", "little ones", "son", "daughter", "toddler", "toddlers", "grandkids",
              "kid-friendly", "child-friendly")
FAMILY_WORDS = ("family", "family-friendly", "parents", "grandparents")
DATE_WORDS = ("date", "date night")

# ---- words that are rarely titles on their own ----------------------------------------------------

# Everyday words: a title made only of them ("Them", "Yes Man", "The Night", "Love") is taken only
# with strong evidence (quotes, a year, or written exactly as the title with its capitals mid-sentence).
COMMON_WORDS = set("""
a about above after again against all also always am an and any are as at back be because been before
being below between both but by can could did do does doing done down during each else even ever every
few for from further get gets getting go goes going gone good got great had has have having he her here
hers herself him himself his how i if in into is it its itself just know last least less let like liked
likes little lot lots love loved loves made make man many may me men might mine more most much must my
myself need never new nice night no nor not now of off often oh ok okay old on once one ones only or other
others our ours ourselves out over own pretty quite rather really right said same saw say see seen she
should since so some something still such sure take than thank thanks that the their theirs them
themselves then there these they thing things think this those though through thought time to too two
under until up us very want was watch watched way we well were what when where which while who whom why
will with would yeah yes yet you your yours yourself yourselves kill nerve fun funny cool awesome bad best
better big day first fine go guess hey hi hello hope kind maybe movie movies film films show shows okay
people person story thing true wait wow yep nope sounds sound look looks looking something anything
everything nothing always sometimes usually new old young life world home family friends
nobody somebody everybody anyone someone everyone nowhere somewhere here today tonight tomorrow
yesterday weekend monday tuesday wednesday thursday friday saturday sunday morning evening
""".split())

# Common first names: a name alone ("Paul", "Emma") is a person far more often than the film of that
# name; such titles need quotes or a year.
FIRST_NAMES = set("""
aaron adam alan albert alex alice amanda amy andrew angela anna anne anthony arnold ben benjamin bill
bob brad brian bruce carl carol caroline charles charlie chris christian christopher daniel danny david
dennis diane donald dustin ed eddie edward elizabeth ellen emily emma eric frank fred gary george grace
harry helen henry jack jackie jake james jane jason jeff jennifer jerry jessica jim jimmy joe john johnny
jon jonathan joseph josh julia julie karen kate katherine keanu kevin kim larry laura leo linda lisa
lucy luke margaret maria mark martin mary matt matthew max meg melissa michael michelle mike morgan
nancy natalie nick nicole oliver patrick paul peter philip rachel ray richard rick robert robin ryan
sam samantha sandra sarah scott sean stephen steve steven susan thomas tim timothy tom tommy tony
victor will william
""".split())
