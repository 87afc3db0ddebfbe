// The rtserver demo page: one client, one session per mode (chat, story, NPC scene), replies streamed into the page
// with their time to first delta (from the key press) and tokens/s. Plain DOM, no framework, no build step.
import { Client } from "./rtclient.js";

const $ = (selector) => document.querySelector(selector);
const query = new URLSearchParams(location.search);
const url = query.get("ws") ?? `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/`;

const PERSONAS = {
  bram: "You are Bram, a gruff blacksmith in the village of Ashvale. You answer in one or two short sentences.",
  mira: "You are Mira, a cheerful herbalist in the village of Ashvale.",
  vell: "You are Captain Vell, the weary captain of a river barge. You speak plainly and briefly.",
};
const NARRATOR = "You are a storyteller. Continue the story the user begins, one vivid paragraph at a time.";
const INNKEEPER =
  "You are Hilda, the innkeeper of the Drowned Lantern. Answer the traveller with what you say (line), how you " +
  "feel (emotion) and up to three short things the traveller could say next (choices).";
const NPC_SCHEMA = {
  type: "object",
  properties: {
    line: { type: "string", maxLength: 120 },
    emotion: { type: "string", enum: ["happy", "angry", "sad", "neutral"] },
    choices: { type: "array", items: { type: "string", maxLength: 40 }, maxItems: 3 },
  },
  required: ["line", "emotion", "choices"],
};
const OPENING_CHOICES = ["Any rooms free tonight?", "Heard any rumours?", "Who are you?"];

let client;
let current = "chat";
let running = null; // the turn streaming now, for the cancel button

// --- streaming a reply into the page -------------------------------------------------------------------------------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}

function stats(ttft, tokens, ms) {
  const rate = tokens > 1 && ms > 0 ? `${Math.round((tokens - 1) / (ms / 1000))} tok/s` : "– tok/s";
  return `TTFT ${ttft === null ? "–" : `${Math.round(ttft)} ms`} · ${rate}`;
}

/** Streams `turn` into `target`, showing live TTFT (from `t0`, the key press) and tokens/s in `meta`. */
async function stream(turn, target, meta, t0, onText) {
  running = turn;
  buttons();
  let first = null;
  let pieces = 0;
  try {
    for await (const piece of turn) {
      target.append(piece);
      const now = performance.now();
      first ??= now;
      pieces++;
      meta.textContent = stats(first - t0, pieces, now - first);
      onText?.(turn.text);
    }
    const r = await turn.result;
    const ended = `${stats(first === null ? null : first - t0, r.usage.completion ?? pieces, performance.now() - (first ?? 0))}`;
    meta.textContent = r.reason === "stop" ? ended : `${ended} · ${r.reason}`;
    return r;
  } catch (exc) {
    meta.textContent = `${exc.name}: ${exc.message}`;
    meta.classList.add("error");
    return null;
  } finally {
    if (running === turn) running = null;
    buttons();
  }
}

function bubble(log, who, text) {
  const node = el("div", `msg ${who}`, text);
  $(log).append(node);
  node.scrollIntoView({ block: "end" });
  return node;
}

function reply(log) {
  const node = bubble(log, "reply");
  const text = el("span", "text");
  const meta = el("div", "reply-meta", "…");
  node.append(text, meta);
  return { node, text, meta };
}

// --- chat: a persona, and a conversation with it -------------------------------------------------------------------

const chat = {
  session: null,
  last: null,
  async start() {
    this.session = await client.open({ persona: PERSONAS[$("#persona").value], params: { max_tokens: 100 } });
    $("#chat-log").replaceChildren();
    this.last = null;
  },
  async send(text, t0) {
    bubble("#chat-log", "user", text);
    this.last = reply("#chat-log");
    await stream(this.session.say(text, { interrupt: true }), this.last.text, this.last.meta, t0);
  },
  async regenerate(t0) {
    if (!this.last) return;
    this.last.text.replaceChildren();
    this.last.meta.classList.remove("error");
    await stream(this.session.regenerate(), this.last.text, this.last.meta, t0);
  },
};

// --- story: passages with alternatives (regenerate), continuations and rollback ------------------------------------

const story = {
  session: null,
  passages: [], // on the active path: { parent, node, text, meta, alts: [{ tid, text }], pick }
  async start() {
    this.session = await client.open({ persona: NARRATOR, params: { max_tokens: 160 } });
  },
  add(prompt) {
    this.passages.at(-1)?.altsNode.replaceChildren(); // versions can be picked on the last passage only
    const node = el("div", "passage");
    if (prompt) node.append(el("span", "prompt", prompt));
    const text = el("span", "text");
    const meta = el("div", "reply-meta", "…");
    const alts = el("div", "alts");
    node.append(text, meta, alts);
    $("#story-log").append(node);
    node.scrollIntoView({ block: "end" });
    const passage = { parent: null, node, text, meta, altsNode: alts, alts: [], pick: 0 };
    this.passages.push(passage);
    return passage;
  },
  async run(passage, turn, t0) {
    turn.started.then(() => (passage.parent ??= turn.parent), () => {});
    const r = await stream(turn, passage.text, passage.meta, t0);
    if (r && r.reason !== "error") {
      passage.alts.push({ tid: r.tid, text: r.text });
      passage.pick = passage.alts.length - 1;
      this.drawAlts(passage);
    }
  },
  drawAlts(passage) {
    passage.altsNode.replaceChildren();
    if (passage.alts.length < 2) return;
    passage.altsNode.append("Versions:");
    passage.alts.forEach((alt, i) => {
      const b = el("button", "", String(i + 1));
      b.setAttribute("aria-pressed", String(i === passage.pick));
      b.onclick = () => this.pickAlt(passage, i);
      passage.altsNode.append(b);
    });
  },
  async pickAlt(passage, i) {
    if (passage !== this.passages.at(-1) || running) return;
    await this.session.rollback(passage.alts[i].tid); // the head moves to that version
    passage.pick = i;
    passage.text.textContent = passage.alts[i].text;
    this.drawAlts(passage);
  },
  send(text, t0) {
    return this.run(this.add(text), this.session.say(text), t0);
  },
  regenerate(t0) {
    const passage = this.passages.at(-1);
    if (!passage) return;
    passage.text.replaceChildren();
    return this.run(passage, this.session.regenerate(), t0);
  },
  continue(t0) {
    if (this.passages.length) return this.run(this.add(null), this.session.continue(), t0);
  },
  async rollback() {
    const passage = this.passages.at(-1);
    if (!passage || running) return;
    await this.session.rollback(passage.parent ?? 0);
    this.passages.pop();
    passage.node.remove();
    if (this.passages.length) this.drawAlts(this.passages.at(-1));
  },
};

// --- NPC scene: replies as JSON {line, emotion, choices}; choices become buttons -----------------------------------

const npc = {
  session: null,
  async start() {
    this.session = await client.open({ persona: INNKEEPER, params: { temperature: 0.7, max_tokens: 160 } });
    this.choices(OPENING_CHOICES);
  },
  choices(list) {
    $("#npc-choices").replaceChildren(
      ...list.map((choice) => {
        const b = el("button", "", choice);
        b.onclick = (event) => send(choice, event.timeStamp);
        return b;
      }),
    );
  },
  send(text, t0) {
    bubble("#npc-log", "user", text);
    return this.show(this.session.say(text, { schema: NPC_SCHEMA }), t0);
  },
  regenerate(t0) {
    return this.show(this.session.regenerate(), t0);
  },
  async show(turn, t0) {
    const line = $("#npc-line");
    const raw = el("pre", "raw");
    line.replaceChildren(raw);
    $("#npc-choices").replaceChildren();
    const meta = $("#npc-meta");
    meta.classList.remove("error");
    const r = await stream(turn, raw, meta, t0);
    if (!r) return;
    let said;
    try {
      said = JSON.parse(r.text);
    } catch {
      line.append(el("div", "reply-meta error", "(the reply did not parse as JSON)"));
      this.choices(OPENING_CHOICES);
      return;
    }
    line.textContent = `“${said.line}”`;
    const emotion = $("#npc-emotion");
    emotion.textContent = said.emotion;
    emotion.className = `emotion ${said.emotion}`;
    bubble("#npc-log", "reply", said.line);
    this.choices(said.choices.length ? said.choices : OPENING_CHOICES);
  },
};

const modes = { chat, story, npc };

// --- wiring ----------------------------------------------------------------------------------------------------------

function buttons() {
  $("#cancel").disabled = running === null;
  $("#regenerate").disabled = running !== null;
  $("#story-continue").disabled = running !== null;
  $("#story-rollback").disabled = running !== null;
}

function send(text, t0) {
  if (!text.trim() || !modes[current].session) return;
  modes[current].send(text, t0);
}

let keyAt = null; // the key press that sends the line: TTFT counts from it
$("#input").addEventListener("keydown", (event) => {
  if (event.key === "Enter") keyAt = event.timeStamp;
});
$("#composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("#input");
  send(input.value, keyAt ?? event.timeStamp);
  keyAt = null;
  input.value = "";
});
$("#cancel").onclick = () => running?.cancel();
$("#regenerate").onclick = (event) => modes[current].regenerate(event.timeStamp);
$("#story-continue").onclick = (event) => story.continue(event.timeStamp);
$("#story-rollback").onclick = () => story.rollback();
$("#persona").onchange = () => chat.start();
for (const b of document.querySelectorAll("#modes button")) {
  b.onclick = () => {
    current = b.dataset.mode;
    for (const other of document.querySelectorAll("#modes button")) other.setAttribute("aria-pressed", String(other === b));
    for (const name of Object.keys(modes)) $(`#${name}`).hidden = name !== current;
    $("#input").focus();
  };
}

function banner(text) {
  $("#banner").hidden = text === null;
  $("#banner").textContent = text ?? "";
}

async function main() {
  client = new Client(url, { name: "rtserver-demo" });
  client.on("disconnected", () => banner("Connection lost: reconnecting…"));
  client.on("reconnecting", ({ attempt }) => banner(`Connection lost: reconnecting (attempt ${attempt})…`));
  client.on("open", ({ welcome, reconnects }) => {
    banner(null);
    $("#status").textContent = `${welcome.server} · node ${welcome.node}${reconnects ? ` · reconnected ${reconnects}×` : ""}`;
  });
  client.on("closed", ({ error }) => banner(`Disconnected (${error.message}). Reload the page to start again.`));
  await client.connect();
  for (const mode of Object.values(modes)) {
    await mode.start();
    // A session the server no longer knows (closed, or its store was wiped) is replaced by a new one.
    const watch = () => mode.session.on("closed", ({ error }) => error && mode.start().then(watch));
    watch();
  }
  window.rtdemo = { client, modes };
  document.body.dataset.ready = "true";
  buttons();
  $("#input").focus();
}

main().catch((exc) => banner(`Could not connect to ${url}: ${exc.message}`));
