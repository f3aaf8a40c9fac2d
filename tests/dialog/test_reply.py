"""Reply writing: the opening check (chosen titles pass, any other fails) and the intro writer's
streaming (what is streamed is the start of the final reply)."""
from dialog.reply import (
    INTRO_USER_CHARS,
    LLMReplyWriter,
    ReplyChecker,
    ReplyItem,
    Retract,
    intro_request,
    request_summary,
    template_reply,
)
from dialog.state import Constraints
from dialog.understand import TitleFinder
from tests.dialog.doubles import ScriptedChat

ITEMS = [ReplyItem(9, "The Godfather: Part II", 1974, "crime saga"), ReplyItem(11, "Heat", 1995, "crime")]


def test_check_opening_accepts_chosen_titles_and_rejects_others(resources):
    check = ReplyChecker(TitleFinder(resources.titles)).check_opening
    for ok in ("Here are some gritty crime dramas!",
               "The Godfather: Part II and Heat are waiting for you!",
               "If you want a heist, Heat is the one to start with.",
               "Loved Jaws? These crime picks bite too."):
        assert check(ok, ITEMS, user_text="I loved Jaws") == [], ok
    for bad in ("Heat is great, and so is Casablanca!",            # one chosen, one not
                "Fargo fans will love these.",                      # a title that starts the sentence
                "Try The Matrix tonight!",
                'Watch "Space Cats 3" first.',                      # quoted, in no catalogue
                "Loved Jaws? These crime picks bite too."):         # Jaws, not named by the person
        assert check(bad, ITEMS), bad
    assert check("", ITEMS) == ["empty"]


def test_intro_request_hides_titles_and_stays_short(resources):
    finder = TitleFinder(resources.titles)
    assert intro_request("I loved Heat, something like Fargo but funnier", finder) == \
        "I loved it, something like it but funnier"
    text = "a crime drama " * 30
    short = intro_request(text, finder)
    assert INTRO_USER_CHARS - 15 < len(short) <= INTRO_USER_CHARS and text.startswith(short + " ")  # between words


def test_request_summary_names_only_what_was_understood():
    c = Constraints(include_genres=["Sci-Fi", "Comedy"], exclude_genres=["Horror"], year_min=2010,
                    year_max=2019, moods=["dark"], audience="kids", like_items=[3])
    assert request_summary(c) == "sci-fi, comedy; no horror; 2010s; dark; for kids; like a movie they named"
    assert request_summary(Constraints(year_min=1995, year_max=2003)) == "1995-2003"
    assert request_summary(Constraints(year_max=1980)) == "before 1980"
    assert request_summary(Constraints()) == ""


def test_intro_prompt_reads_the_summary_when_there_is_one(resources):
    checker = ReplyChecker(TitleFinder(resources.titles))
    chat = ScriptedChat(["Here are some crime dramas!"])
    _run(LLMReplyWriter(chat, checker), request="crime; 1990s")
    _run(LLMReplyWriter(chat, checker))
    assert chat.prompts[0][-1].content == "Wants: crime; 1990s"
    assert chat.prompts[1][-1].content == "a crime movie like it"          # nothing understood: the message


def _run(writer, notes=("I took \"heat\" to mean Heat (1995).",), request=""):
    log, pieces = [], []
    gen = writer.stream("a crime movie like Heat", ITEMS, list(notes), 1, log, request=request)
    while True:
        try:
            pieces.append(next(gen))
        except StopIteration as stop:
            return pieces, stop.value, log


def test_intro_writer_streams_the_final_reply(resources):
    checker = ReplyChecker(TitleFinder(resources.titles))
    chat = ScriptedChat(['  "The Godfather: Part II leads a night of crime classics!"\nAlso try Titanic (1997).'])
    pieces, reply, log = _run(LLMReplyWriter(chat, checker))
    assert pieces[0] == 'I took "heat" to mean Heat (1995).\n'            # notes first: they are in any reply
    assert "".join(pieces) == reply                                         # what was streamed is the reply
    assert reply.split("\n")[1] == "The Godfather: Part II leads a night of crime classics!"
    assert "Titanic" not in reply and chat.closed == 1                      # stopped at the line break
    assert reply.endswith(template_reply(ITEMS, [], 1, intro=""))
    assert log == ["reply: LLM intro attempt 1 passed the check"]


def test_intro_writer_regenerates_then_falls_back(resources):
    checker = ReplyChecker(TitleFinder(resources.titles))
    chat = ScriptedChat(["Try Casablanca and The Matrix!", "Heat fans, these crime dramas are for you!"])
    pieces, reply, log = _run(LLMReplyWriter(chat, checker))
    assert "Casablanca" in "".join(pieces) and "Casablanca" not in reply    # the failed draft was replaced
    assert isinstance(pieces[-1], Retract) and sum(isinstance(p, Retract) for p in pieces) == 1  # ... withdrawn
    assert reply.split("\n")[1] == "Heat fans, these crime dramas are for you!"
    assert "attempt 1 failed" in log[0] and "attempt 2 passed" in log[1]

    chat = ScriptedChat(["Try Casablanca!", "Jaws is a classic too!"])
    pieces, reply, log = _run(LLMReplyWriter(chat, checker))
    assert reply == template_reply(ITEMS, ['I took "heat" to mean Heat (1995).'], 1)
    assert reply.startswith(pieces[0]) and log[-1] == "reply: used the template"

