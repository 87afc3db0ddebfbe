"""Procedural corpus of NPC dialogue, quests and short stories in the chat format the bundled model is prompted with.

No suitable corpus can be installed on the build machines, so we generate one: characters with a role, a place,
a mood and wares; players greet them, ask their name, trade, ask for rumours, quests and stories, and leave.
Every conversation is rendered with the ChatML template that the GGUF carries (``<|im_start|>role\\n...<|im_end|>``).

    python -m training.corpus --out build/corpus --conversations 200000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

NAMES = (
    "Bram Aldo Mira Tessa Orin Hilda Corwin Yara Fenwick Marta Jory Elsbeth Dunstan Nell Gareth Ivy Rowan Silas "
    "Agnes Tobin Wren Osric Lina Cade Maud Piet Selene Ulric Vera Edda Hugo Rosalind Kestrel Brin Odile Taran Greta "
    "Lorcan Anwen Milo Sabine Thorne Ilse Cyril Nadia Petra Rook Alaric Bea Quill Sorrel Dagny Emrys Fiora"
).split()
ROLES = {
    "blacksmith": ("swords", "axes", "horseshoes", "nails", "iron helmets", "chain mail"),
    "innkeeper": ("ale", "hot stew", "a warm bed", "bread", "cider", "roast chicken"),
    "herbalist": ("healing salve", "dried sage", "sleeping draught", "mint tea", "willow bark", "honey tonic"),
    "merchant": ("rope", "lanterns", "maps", "salt", "wool cloaks", "travel boots"),
    "guard": ("advice", "directions", "a warning", "old news", "the town rules", "a stern look"),
    "fisher": ("fresh trout", "smoked eel", "nets", "fish hooks", "river crabs", "salted cod"),
    "librarian": ("old books", "maps of the north", "ink", "scrolls", "a quiet corner", "candles"),
    "farmer": ("apples", "eggs", "turnips", "goat cheese", "barley", "fresh milk"),
    "bard": ("songs", "ballads", "gossip", "a lute tune", "tall tales", "poems"),
    "alchemist": ("potions", "strange powders", "glass vials", "fire oil", "quicksilver", "elixirs"),
    "hunter": ("furs", "venison", "arrows", "traps", "deer hides", "bows"),
    "priest": ("blessings", "prayers", "holy water", "candles", "comfort", "quiet words"),
}
PLACES = (
    "Eastmere Oakhollow Stonebridge Ravenford Millbrook Ashvale Greywater Thornwick Dunmoor Brightwell Elmstead "
    "Highcliff Fernside Coldharbor Marrowdale Kingsreach Willowmere Blackpine Saltmarsh Redhill"
).split()
MOODS = {
    "cheerful": ("Ha! ", "Oh, wonderful! ", "Well met! ", "What a fine day! "),
    "gruff": ("Hmph. ", "Make it quick. ", "Aye. ", "Bah. "),
    "nervous": ("Oh! You startled me. ", "Um, yes? ", "Please, keep your voice down. ", "Ah, er, hello. "),
    "wise": ("Patience, friend. ", "Hmm. ", "Listen well. ", "Ah, a seeker. "),
    "tired": ("*yawns* ", "Long day. ", "Mm. ", "Ah, another visitor. "),
    "friendly": ("Hello, friend! ", "Welcome! ", "Good to see you! ", "Come in, come in! "),
    "suspicious": ("Who sent you? ", "State your business. ", "I've got my eye on you. ", "Hm. A stranger. "),
}
PLAYER_NAMES = "Ash Kit Sam Robin Alex Jo Lee Morgan Quinn Rey Sky Dale".split()
MONSTERS = ("wolves", "goblins", "a troll", "bandits", "giant spiders", "a wyvern", "skeletons", "a bear", "rats")
LANDMARKS = (
    "the old mill",
    "the north woods",
    "the abandoned mine",
    "the ruined tower",
    "the marsh",
    "the hills",
    "the crypt",
    "the river ford",
    "the cave by the lake",
    "the old watchtower",
)
ITEMS = (
    "a silver ring",
    "a lost locket",
    "a stolen ledger",
    "a sack of grain",
    "an old sword",
    "a blue gem",
    "a letter",
    "a family heirloom",
    "a map fragment",
    "a healing herb",
)
WEATHER = (
    "rain is coming",
    "the frost came early this year",
    "the harvest was good",
    "the river is high",
    "the nights grow long",
    "the roads are muddy",
)
STORY_HEROES = (
    "a young shepherd",
    "an old knight",
    "a clever fox",
    "a lost princess",
    "a wandering bard",
    "a brave miller's daughter",
    "a one-eyed sailor",
    "a quiet monk",
    "a stubborn dwarf",
    "a little dragon",
)
STORY_GOALS = (
    "find the moonlit spring",
    "return a stolen crown",
    "cross the frozen sea",
    "outwit a greedy king",
    "break an ancient curse",
    "save the village well",
    "find a way home",
    "tame a wild storm",
)
STORY_TWISTS = (
    "a talking crow showed the way",
    "the map was drawn backwards",
    "the monster was only lonely",
    "a kind stranger shared bread",
    "the key had been in a pocket all along",
    "the river sang a warning",
)
STORY_ENDS = (
    "and the village feasted for three days.",
    "and nobody ever forgot that winter.",
    "and that is why we leave a candle in the window.",
    "and peace returned to the valley.",
    "and the hero went home wiser than before.",
)


@dataclass(frozen=True)
class Character:
    name: str
    role: str
    place: str
    mood: str
    wares: tuple[str, ...]

    def system_prompt(self, rng: random.Random) -> str:
        forms = (
            f"You are {self.name}, a {self.mood} {self.role} in the village of {self.place}.",
            f"You are {self.name}, the {self.role} of {self.place}. You are {self.mood}.",
            f"Play {self.name}, a {self.role} from {self.place}. Mood: {self.mood}.",
            f"You are {self.name}. You work as a {self.role} in {self.place} and you are {self.mood}. "
            "Stay in character.",
        )
        return rng.choice(forms)


def _sell_list(rng: random.Random, wares: tuple[str, ...]) -> str:
    picked = rng.sample(wares, k=rng.choice((2, 3)))
    return ", ".join(picked[:-1]) + " and " + picked[-1]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


class Dialogue:
    """Generates one exchange per intent; each method returns (user line, assistant line)."""

    def __init__(self, rng: random.Random, npc: Character, player: str | None) -> None:
        self.rng, self.npc, self.player = rng, npc, player

    def _open(self) -> str:
        return self.rng.choice(MOODS[self.npc.mood]) if self.rng.random() < 0.6 else ""

    def greet(self) -> tuple[str, str]:
        r, n = self.rng, self.npc
        user = r.choice(("Hello!", "Hi there.", "Good day.", "Greetings.", "Hey.", "Hello, who are you?"))
        if self.player and r.random() < 0.5:
            user = r.choice((f"Hello, I am {self.player}.", f"Hi, my name is {self.player}."))
            return user, f"{self._open()}Nice to meet you, {self.player}. I am {n.name}, the {n.role}."
        return user, f"{self._open()}I am {n.name}, the {n.role} of {n.place}. What do you need?"

    def name(self) -> tuple[str, str]:
        user = self.rng.choice(("What is your name?", "Who are you?", "What's your name?", "And you are?"))
        return user, f"{self._open()}My name is {self.npc.name}. I am the {self.npc.role} here in {self.npc.place}."

    def trade(self) -> tuple[str, str]:
        r, n = self.rng, self.npc
        user = r.choice(("What do you sell?", "What have you got?", "Show me your wares.", "Can I buy something?"))
        price = r.randint(2, 40)
        tail = r.choice((f" {_cap(n.wares[0])} costs {price} coins.", " Take a look.", " Prices are fair."))
        return user, f"{self._open()}I have {_sell_list(r, n.wares)}.{tail}"

    def buy(self) -> tuple[str, str]:
        r, n = self.rng, self.npc
        item = r.choice(n.wares)
        price = r.randint(2, 40)
        user = r.choice((f"I'll take the {item}.", f"How much for {item}?", f"Can I buy {item}?"))
        return user, f"{self._open()}{_cap(item)} will be {price} coins. " + r.choice(
            ("A fair deal.", "Pay up front.", "You won't regret it.", "Use it well.")
        )

    def rumour(self) -> tuple[str, str]:
        r = self.rng
        user = r.choice(("Any news?", "Heard any rumours?", "What is happening in town?", "Tell me the latest gossip."))
        line = r.choice(
            (
                f"They say {r.choice(MONSTERS)} were seen near {r.choice(LANDMARKS)}.",
                f"Folk whisper about {r.choice(ITEMS)} hidden in {r.choice(LANDMARKS)}.",
                f"I heard {r.choice(WEATHER)}.",
                f"A stranger from {r.choice(PLACES)} came asking questions.",
            )
        )
        return user, f"{self._open()}{line}"

    def quest(self) -> tuple[str, str]:
        r = self.rng
        user = r.choice(("Do you have any work for me?", "Need any help?", "Is there a quest?", "Any jobs?"))
        reward = r.randint(10, 200)
        line = r.choice(
            (
                f"Clear the {r.choice(MONSTERS)} out of {r.choice(LANDMARKS)} and I will pay you {reward} gold.",
                f"Find {r.choice(ITEMS)} I lost near {r.choice(LANDMARKS)}. There is {reward} gold in it for you.",
                f"Take this letter to the {r.choice(list(ROLES))} in {r.choice(PLACES)}. I'll pay {reward} silver.",
            )
        )
        return user, f"{self._open()}{line}"

    def accept(self) -> tuple[str, str]:
        r = self.rng
        user = r.choice(("I'll do it.", "Deal.", "Consider it done.", "I accept."))
        return user, r.choice(
            (
                "Good. Be careful out there.",
                "Thank you. Come back safe.",
                "Don't let me down.",
                "Then go, before it gets dark.",
            )
        )

    def place(self) -> tuple[str, str]:
        r, n = self.rng, self.npc
        user = r.choice((f"Tell me about {n.place}.", "What is this place?", "Where am I?"))
        return user, f"{self._open()}This is {n.place}. " + r.choice(
            (
                f"Quiet most days, but {r.choice(WEATHER)}.",
                f"Stay away from {r.choice(LANDMARKS)} at night.",
                f"The road east leads to {r.choice(PLACES)}.",
                "Small, but we look after our own.",
            )
        )

    def story(self) -> tuple[str, str]:
        r = self.rng
        user = r.choice(("Tell me a story.", "Do you know any tales?", "Tell me a short story.", "Got a story for me?"))
        hero, goal = r.choice(STORY_HEROES), r.choice(STORY_GOALS)
        text = (
            f"Once, {hero} from {r.choice(PLACES)} set out to {goal}. "
            f"The way was hard, past {r.choice(LANDMARKS)} and {r.choice(MONSTERS)}. "
            f"In the end {r.choice(STORY_TWISTS)}, {r.choice(STORY_ENDS)}"
        )
        return user, f"{self._open()}{text}"

    def mood(self) -> tuple[str, str]:
        r, n = self.rng, self.npc
        user = r.choice(("How are you?", "How are you feeling?", "How is business?"))
        feel = {
            "cheerful": "Never better!",
            "gruff": "Busy. Always busy.",
            "nervous": "On edge, truth be told.",
            "wise": "At peace, as ever.",
            "tired": "Tired. So very tired.",
            "friendly": "Good, thank you!",
            "suspicious": "Well enough, until strangers started asking questions.",
        }[n.mood]
        return user, f"{feel} " + r.choice(("And you?", f"Being a {n.role} is no easy life.", ""))

    def farewell(self) -> tuple[str, str]:
        r = self.rng
        user = r.choice(("Goodbye.", "Farewell.", "I must go.", "See you later.", "Bye."))
        who = f", {self.player}" if self.player and r.random() < 0.5 else ""
        return user, r.choice((f"Safe travels{who}.", f"Farewell{who}.", "Come back soon.", "Mind the road."))


INTENTS = ("name", "trade", "buy", "rumour", "quest", "place", "story", "mood")


def render(system: str, turns: list[tuple[str, str]]) -> str:
    out = [f"<|im_start|>system\n{system}<|im_end|>\n"]
    for user, assistant in turns:
        out.append(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n{assistant}<|im_end|>\n")
    return "".join(out)


def random_character(rng: random.Random) -> Character:
    role = rng.choice(list(ROLES))
    return Character(rng.choice(NAMES), role, rng.choice(PLACES), rng.choice(list(MOODS)), ROLES[role])


def conversation(rng: random.Random) -> tuple[Character, str, list[tuple[str, str]]]:
    npc = random_character(rng)
    d = Dialogue(rng, npc, rng.choice(PLAYER_NAMES) if rng.random() < 0.4 else None)
    turns = [d.greet()] if rng.random() < 0.7 else []
    for _ in range(rng.randint(1, 7)):
        intent = rng.choice(INTENTS)
        turns.append(getattr(d, intent)())
        if intent == "quest" and rng.random() < 0.5:
            turns.append(d.accept())
    if rng.random() < 0.5:
        turns.append(d.farewell())
    return npc, npc.system_prompt(rng), turns


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("build/corpus"))
    p.add_argument("--conversations", type=int, default=200_000)
    p.add_argument("--heldout", type=int, default=2_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    with open(a.out / "train.txt", "w") as f:
        for _ in range(a.conversations):
            f.write(render(*conversation(rng)[1:]) + "\n")
    # Held-out text and prompts come from another seed: unseen combinations of the same world.
    held = random.Random(a.seed + 1_000_003)
    with open(a.out / "heldout.txt", "w") as f, open(a.out / "prompts.jsonl", "w") as pf:
        for _ in range(a.heldout):
            npc, system, turns = conversation(held)
            f.write(render(system, turns) + "\n")
            pf.write(
                json.dumps({"name": npc.name, "system": system, "history": turns[:-1], "user": turns[-1][0]}) + "\n"
            )


if __name__ == "__main__":
    main()
