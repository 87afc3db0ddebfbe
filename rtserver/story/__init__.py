"""Storytelling: Character Card V2 (card.py), macros (macros.py), the character book (lorebook.py), the story
state a session carries (state.py) and the prompt a turn of a card session is rendered from (render.py)."""
