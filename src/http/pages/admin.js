// The admin page's only script (served from /assets/admin.js; the pages' Content-Security-Policy
// allows no other). Pages work without it; it adds confirmations and the live activity feed.
"use strict";

// A form with data-confirm asks before it is sent (deleting, revoking, stopping).
document.addEventListener("submit", (event) => {
  const question = event.target.dataset ? event.target.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// The activity table with data-stream: entries the server pushes (server-sent events) are added
// at the top as they are written. The stream starts after the newest entry the page showed and
// the browser resumes it by id after a dropped connection, so nothing is shown twice or missed.
document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector("table[data-stream]");
  if (!table) {
    return;
  }
  const state = document.getElementById("live-state");
  const say = (text) => {
    if (state) {
      state.textContent = text;
    }
  };
  const source = new EventSource(table.dataset.stream);
  source.addEventListener("open", () => say("live"));
  source.addEventListener("error", () => say("reconnecting…"));
  source.addEventListener("missed", (e) => say(`live (${e.data} entries were missed; reload to see them)`));
  source.addEventListener("entry", (e) => {
    const entry = JSON.parse(e.data);
    const row = table.tBodies[0].insertRow(1);
    row.className = "entry";
    const cells = [entry.time, entry.kind, entry.role, entry.actor, entry.agent || "", entry.instance || "", entry.summary];
    for (const text of cells) {
      row.insertCell().textContent = text;
    }
  });
});

// The chat box's mention popover: typing `@` and a few letters lists the agents and the files
// (in every running instance) it could mean; choosing one puts the exact mention in the text.
document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("message");
  const list = document.getElementById("mention-list");
  if (!input || !list) {
    return;
  }
  let asked = 0;
  const word = () => {
    const before = input.value.slice(0, input.selectionStart);
    const match = /(^|\s)@([^\s@]*)$/.exec(before);
    return match ? { start: before.length - match[2].length, q: match[2] } : null;
  };
  const choose = (mention) => {
    const at = word();
    if (!at) {
      return;
    }
    const end = input.selectionStart;
    input.value = input.value.slice(0, at.start) + mention + " " + input.value.slice(end);
    list.replaceChildren();
    input.focus();
  };
  input.addEventListener("input", async () => {
    const at = word();
    if (!at || at.q.length === 0) {
      list.replaceChildren();
      return;
    }
    const ticket = ++asked;
    const response = await fetch("/mentions?q=" + encodeURIComponent(at.q));
    if (!response.ok || ticket !== asked) {
      return;
    }
    const found = await response.json();
    const items = found.agents.map((name) => [name, "agent"])
      .concat(found.files.map((f) => [f.mention, `${f.instance}, ${f.size} bytes`]));
    list.replaceChildren(...items.map(([mention, about]) => {
      const item = document.createElement("li");
      item.className = "mention";
      item.textContent = `@${mention} — ${about}`;
      item.addEventListener("mousedown", (e) => {
        e.preventDefault();
        choose(mention);
      });
      return item;
    }));
  });
});
