"""The grounding guard: strict on invented facts, lenient on wording. Pure: no model."""

import pytest

from pgask.answering.extractive import NO_ANSWER
from pgask.answering.grounding import check_grounding, is_no_answer

NORMANS = ("The Normans were the people who in the 10th and 11th centuries gave their name to "
           "Normandy, a region in France. They were descended from Norse raiders from Denmark, "
           "Iceland and Norway who, under their leader Rollo, agreed to swear fealty to King "
           "Charles III of West Francia.")
BUDGET = ("In 2019 the project cost 1,250,000 dollars, 42% more than planned. The council "
          "approved it on March 3, 1999 and called it \u201ca bold step for the city\u201d.")
PASSAGES = [NORMANS, BUDGET]


def problems(answer, passages=PASSAGES):
    result = check_grounding(answer, passages)
    assert result.grounded == (not result.problems)
    return result.problems


def test_supported_answer_is_grounded_and_lists_its_citations():
    result = check_grounding("Rollo led the Norse raiders [1]. The project cost 1,250,000 "
                             "dollars in 2019 [2].", PASSAGES)
    assert result.grounded and result.problems == [] and result.cited == [1, 2]


def test_invented_number_is_flagged():
    assert problems("The project cost 1,300,000 dollars [2].") == [
        'the number "1,300,000" is not in the cited passages [2]']


def test_number_present_passes_whatever_its_separators():
    assert problems("It cost 1250000 dollars [2].") == []
    assert problems("It cost 1,250,000 dollars [2].") == []
    assert problems("It cost 1\u202f250\u202f000 dollars [2].") == []
    assert problems("It cost 1.25 million dollars [2].") == []
    assert problems("It cost 1.35 million dollars [2].") == [
        'the number "1.35 million" is not in the cited passages [2]']


def test_percent_decimals_and_number_words():
    assert problems("Costs rose by 42 percent [2].") == []
    assert problems("Costs rose by 42.0% [2].") == []
    assert problems("Costs rose by 43% [2].") == [
        'the number "43" is not in the cited passages [2]']
    assert problems("The raiders came from 3 countries [1].",
                    ["Raiders came from three countries."]) == []


def test_years_are_numbers():
    assert problems("The Normans appeared in the 10th century [1].") == []
    assert problems("The project started in 2018 [2].") == [
        'the number "2018" is not in the cited passages [2]']


def test_a_number_must_be_in_a_cited_passage():
    assert problems("Rollo's men numbered 42 [1].") == [
        'the number "42" is not in the cited passages [1]']


def test_dates_in_two_formats():
    assert problems("The council approved it on 1999-03-03 [2].") == []
    assert problems("It was approved on 3 March 1999 [2].") == []
    assert problems("It was approved in March 1999 [2].") == []
    assert problems("It was approved on March 4, 1999 [2].") == [
        'the date "March 4, 1999" is not in the cited passages [2]']
    assert problems("It was approved on 1999-04-03 [2].") == [
        'the date "1999-04-03" is not in the cited passages [2]']


def test_a_year_may_stand_apart_from_the_day():
    passage = ["In 1999 the council met twice; on March 3 it approved the plan."]
    assert problems("The plan was approved on March 3, 1999 [1].", passage) == []
    assert problems("The plan was approved on March 3, 2001 [1].", passage) == [
        'the date "March 3, 2001" is not in the cited passages [1]']


def test_invented_name_is_flagged():
    assert problems("The Norse leader was Rollo, helped by Harald Bluetooth [1].") == [
        'the name "Harald Bluetooth" is not in the cited passages [1]']
    assert problems("They swore fealty to King Louis [1].") == [
        'the name "King Louis" is not in the cited passages [1]']


def test_names_tolerate_case_possessives_plurals_and_word_order():
    assert problems("Normandy takes its name from the Normans' ancestors [1].") == []
    assert problems("They served Charles III, King of West Francia [1].") == []
    assert problems("Rollo's followers came from Denmark [1].") == []
    assert problems("Many raiders came from Iceland [1].") == []


def test_sentence_initial_words_are_not_names_but_acronyms_are():
    assert problems("Eventually the raiders settled in France [1].") == []
    assert problems("Norse raiders settled in France [1].") == []
    assert problems("VACUUM reclaims storage [1].", ["Run vacuum to reclaim storage."]) == []
    assert problems("NATO reclaims storage [1].", ["Run vacuum to reclaim storage."]) == [
        'the name "NATO" is not in the cited passages [1]']


def test_paraphrase_passes():
    assert problems("Rollo, their chief, promised loyalty to the king of West Francia, and "
                    "the land they settled came to be called after them [1].") == []


def test_quotation_is_checked_word_for_word():
    assert problems('The council called it "a bold step for the city" [2].') == []
    assert problems("The council called it \u201ca bold step for the city\u201d [2].") == []
    assert problems('The council called it "a brave step for the city" [2].') == [
        'the quotation "a brave step for the city" is not in the cited passages [2]']


def test_nonexistent_citation_is_flagged():
    result = check_grounding("Rollo led the raiders [3].", PASSAGES)
    assert not result.grounded and result.cited == []
    assert result.problems == [
        "citation [3] points at a passage that does not exist (there were passages 1 to 2)"]
    assert problems("Rollo led the raiders [0].") == [
        "citation [0] points at a passage that does not exist (there were passages 1 to 2)"]


def test_citation_forms():
    for answer in ("Rollo cost 1,250,000 [1][2].", "Rollo cost 1,250,000 [1, 2].",
                   "Rollo cost 1,250,000 [1-2].", "Rollo cost 1,250,000 [1\u20132]."):
        result = check_grounding(answer, PASSAGES)
        assert result.grounded and result.cited == [1, 2], answer
    assert check_grounding("Rollo [1-3].", PASSAGES).cited == [1, 2]
    assert not check_grounding("Rollo [1-3].", PASSAGES).grounded


def test_uncited_answer_is_flagged_and_its_facts_checked_against_every_passage():
    assert problems("Rollo led the Norse raiders.") == ["the answer cites no passage"]
    assert problems("Rollo led 500 Norse raiders.") == [
        "the answer cites no passage", 'the number "500" is not in any passage']


def test_facts_are_checked_against_cited_passages_only():
    assert problems("The project cost 1,250,000 dollars [1].") == [
        'the number "1,250,000" is not in the cited passages [1]']


def test_i_dont_know_is_grounded():
    for answer in ("I don't know.", "I do not know who that was.", NO_ANSWER,
                   "I don\u2019t know: the passages do not say.",
                   "The provided passages do not mention his birth year.",
                   "Sorry, I cannot answer that from these documents."):
        assert is_no_answer(answer), answer
        assert check_grounding(answer, PASSAGES).grounded, answer
    assert check_grounding("I don't know.", []).grounded


@pytest.mark.parametrize("reply", [
    "I don't know", "I don't know.", "i DON'T know!", "\u201cI don\u2019t know.\u201d",
    "I do not know.", "I dont know", "  I don't know \n", "I don't know [1].",
    "I don't know; the passages do not say.",
])
def test_the_ways_a_model_says_i_dont_know(reply):
    assert is_no_answer(reply)


@pytest.mark.parametrize("answer", [
    "I don't know exactly, but Rollo had 500 men [1].",  # a refusal that cites claims facts
    "", "Nobody knows.",
    "I don't know exactly how many, but the manual lists several options for VACUUM, "
    "including FULL, FREEZE and VERBOSE, each with a different effect.",
    "Rollo was the leader [1].",
    "Know your history: Rollo [1].",
])
def test_answers_that_claim_something_are_not_refusals(answer):
    assert not is_no_answer(answer)


def test_empty_answer_is_not_grounded():
    assert problems("  ") == ["the answer is empty"]


def test_list_markers_and_citations_are_not_numbers():
    answer = "1. Rollo led the raiders [1].\n2. The project cost 1,250,000 dollars [2]."
    assert problems(answer) == []


def test_a_quotation_does_not_run_across_a_citation():
    passages = ['The Shah said: "Of course the price of oil is going to rise.', 'It capped the '
                'price of "old oil" only.']
    answer = ('The Shah said: "Of course the price of oil is going to rise. [1] It capped the '
              'price of "old oil" only. [2]')
    assert problems(answer, passages) == []
