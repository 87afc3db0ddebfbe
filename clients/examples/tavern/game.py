"""The Gate at Ashford: a small text adventure whose two NPCs are character cards on rtserver.

Each NPC answers as JSON {line, emotion, choices, action} (a schema the server constrains sampling to, and checks:
``turn.end.valid``). The game, not the model, owns the state: it applies an NPC's ``action`` if the rules allow it
(gold to pay, a token to show) and sends the new state back to every NPC as story variables, so the next reply
knows what the player carries. Run it against a server:

    rtserver serve &                                   # the bundled model
    python clients/examples/tavern/game.py --url ws://127.0.0.1:8000/
    python clients/examples/tavern/game.py --url ws://127.0.0.1:8000/ --script   # three scripted moves
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rtclient import Client, Session

CARDS = Path(__file__).parent / "cards"
REPLY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "line": {"type": "string", "maxLength": 160},
        "emotion": {"enum": ["neutral", "happy", "angry", "afraid", "suspicious"]},
        "choices": {"type": "array", "items": {"type": "string", "maxLength": 48}, "maxItems": 3},
        "action": {
            "type": "object",
            "properties": {
                "kind": {"enum": ["none", "give_item", "take_gold", "open_gate"]},
                "item": {"type": "string", "maxLength": 24},
                "amount": {"type": "integer", "minimum": 0, "maximum": 10},
            },
            "required": ["kind"],
            "additionalProperties": False,
        },
    },
    "required": ["line", "emotion", "choices", "action"],
    "additionalProperties": False,
}
SCRIPT = (  # the three scripted moves: (NPC, the player's line)
    ("bram", "Good evening. I must leave town tonight. Can you help?"),
    ("bram", "I will pay 3 gold for the gate token."),
    ("sela", "Please open the gate. I carry the gate token."),
)


@dataclass
class State:
    """What the game knows; sent to the NPCs as story variables after every move."""

    gold: int = 5
    inventory: list[str] = field(default_factory=list)
    gate: str = "shut"
    last_event: str = "arrived at the inn"

    def story_vars(self) -> dict[str, Any]:
        return {**asdict(self), "inventory": ", ".join(self.inventory) or "nothing"}


def apply(state: State, npc: str, action: dict[str, Any]) -> str:
    """Carry out an NPC's action if the game's rules allow it; what happened, in words."""
    kind = action.get("kind", "none")
    if kind == "give_item" and npc == "bram":
        state.inventory.append("gate token")
        return "Bram hands over the gate token"
    if kind == "take_gold":
        amount = min(int(action.get("amount") or 3), state.gold)
        state.gold -= amount
        if npc == "bram" and "gate token" not in state.inventory:
            state.inventory.append("gate token")  # a sale: the token for the gold
        return f"paid {amount} gold to {npc}"
    if kind == "open_gate":
        if npc != "sela":
            return f"{npc} cannot open the gate"
        if "gate token" not in state.inventory:
            return "Sela would open the gate, but there is no token to show: it stays shut"
        state.gate = "open"
        return "Sela opens the north gate"
    return f"{npc} does nothing"


class Game:
    def __init__(self, client: Client, *, seed: int = 7) -> None:
        self.client, self.seed = client, seed
        self.state = State()
        self.npcs: dict[str, Session] = {}

    async def start(self, player: str = "Traveller") -> None:
        for name in ("bram", "sela"):
            params = {"seed": self.seed, "temperature": 0.7, "max_tokens": 160, "repeat_penalty": 1.1}
            self.npcs[name] = await self.client.open_session(
                card=CARDS / f"{name}.card.json", user=player, params=params, vars=self.state.story_vars()
            )

    async def move(self, npc: str, line: str) -> dict[str, Any]:
        """The player says ``line`` to ``npc``: its reply, what the game made of its action, and the new state."""
        result = await (await self.npcs[npc].say(line, schema=REPLY_SCHEMA)).result()
        reply: dict[str, Any] = json.loads(result.text) if result.parsed else {}
        event = apply(self.state, npc, reply.get("action") or {}) if result.valid else f"{npc} mumbles"
        self.state.last_event = event
        for session in self.npcs.values():  # every NPC learns what the player now carries
            await session.update(vars=self.state.story_vars())
        return {
            "npc": npc,
            "said": line,
            "reply": reply,
            "valid": result.valid,
            "path": result.path,
            "lore": result.lore,
            "event": event,
            "state": asdict(self.state),
        }


async def play(url: str, moves: Any = SCRIPT, *, seed: int = 7) -> list[dict[str, Any]]:
    async with Client(url) as client:
        game = Game(client, seed=seed)
        await game.start()
        return [await game.move(npc, line) for npc, line in moves]


async def interactive(url: str) -> None:
    async with Client(url) as client:
        game = Game(client)
        await game.start()
        print("Talk to bram (the innkeeper) or sela (the guard): 'bram: hello'. Empty line to quit.")
        while game.state.gate != "open":
            text = await asyncio.to_thread(input, "> ")
            npc, _, line = text.partition(":")
            if not text.strip():
                return
            if npc.strip() not in game.npcs:
                print("say 'bram: ...' or 'sela: ...'")
                continue
            out = await game.move(npc.strip(), line.strip())
            reply = out["reply"]
            print(f"{npc.strip().title()} ({reply.get('emotion', '?')}): {reply.get('line', '...')}")
            print(f"  [{out['event']}; gold {game.state.gold}, carrying {game.state.story_vars()['inventory']}]")
        print("The north gate swings open. You leave Ashford behind.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="ws://127.0.0.1:8000/")
    p.add_argument("--script", action="store_true", help="play the three scripted moves and print them as JSON")
    args = p.parse_args()
    if args.script:
        json.dump(asyncio.run(play(args.url)), sys.stdout, indent=1)
        print()
    else:
        asyncio.run(interactive(args.url))


if __name__ == "__main__":
    main()
