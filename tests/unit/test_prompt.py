from rtserver.engine.base import Message
from rtserver.engine.prompt import ChatTemplate, StopMatcher


def test_chatml_render_with_generation_prompt():
    text = ChatTemplate(None).render([Message("system", "S"), Message("user", "U")])
    assert text == "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"


def test_continue_leaves_the_last_reply_open():
    msgs = [Message("user", "U"), Message("assistant", "Once upon")]
    assert ChatTemplate(None).render(msgs, continue_last=True).endswith("<|im_start|>assistant\nOnce upon")


def test_stop_string_split_across_pieces_is_held_back_and_cut():
    m = StopMatcher(["END"])
    assert m.feed("hello E") == ("hello ", False)
    assert m.feed("N") == ("", False)
    assert m.feed("D more") == ("", True)


def test_held_back_text_that_is_not_a_stop_is_released():
    m = StopMatcher(["END"])
    assert m.feed("E") == ("", False)
    assert m.feed("x") == ("Ex", False)
    assert m.flush() == ""
