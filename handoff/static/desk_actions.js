/* omnibot agent desk: transfer (to a team or an agent, with a note), take-over, internal notes and
 * canned replies. Loaded after agent.js; uses what it exposes as window.omnibotDesk and redraws on
 * its "omnibot:rendered" event. Server data goes into the DOM as text only, never as HTML. */
"use strict";

(() => {
  const desk = window.omnibotDesk;
  if (!desk) return;
  const { state, api, el, toast, reportError } = desk;
  const $ = (sel) => document.querySelector(sel);
  let directory = null;          // {agents: [{name, email, teams, role}], teams: [{id, name}]}
  const lastHolder = new Map();  // handoff id -> who held it when last shown

  // -- the controls, added once --------------------------------------------------------

  const actions = $("#conv .actions");
  const transferBtn = el("button", { type: "button", id: "transfer-btn", text: "Transfer…", hidden: true });
  const takeoverBtn = el("button", { type: "button", id: "takeover-btn", text: "Take over", hidden: true,
    title: "Take this conversation from the agent who holds it" });
  actions.prepend(transferBtn, takeoverBtn);

  const teamSel = el("select", { id: "transfer-team", "aria-label": "Team" });
  const agentSel = el("select", { id: "transfer-agent", "aria-label": "Agent (optional)" });
  const noteBox = el("textarea", { id: "transfer-note", rows: 2, maxLength: 4000,
    placeholder: "Note for the receiver (optional, never sent to the customer)" });
  const submit = el("button", { type: "submit", id: "transfer-submit", class: "primary", text: "Transfer" });
  const cancel = el("button", { type: "button", text: "Cancel" });
  const panel = el("form", { id: "transfer-panel", class: "desk-panel", hidden: true },
    el("label", { class: "hint", text: "Transfer to" }), teamSel, agentSel, noteBox, el("div", { class: "row" }, submit, cancel));
  $("#conv .conv-head").after(panel);

  const noteInput = el("textarea", { id: "note-input", rows: 1, maxLength: 4000,
    placeholder: "Internal note: only agents see it, never the customer" });
  const noteAdd = el("button", { type: "submit", id: "note-add", text: "Add note" });
  const noteForm = el("form", { id: "note-form", hidden: true }, el("div", { class: "grow" }, noteInput), noteAdd);
  $("#reply-note").after(noteForm);

  const menu = el("ul", { id: "canned-menu", role: "listbox", hidden: true, "aria-label": "Canned replies" });
  $("#reply-form .grow").append(menu);

  // -- transfer ------------------------------------------------------------------------------

  async function loadDirectory() {
    if (!directory) directory = await api("GET", "/agent/api/agents");
    return directory;
  }

  function fillAgents() {
    const team = teamSel.value;
    const me = state.me && state.me.name;
    const people = (directory.agents || []).filter((a) => a.name !== me &&
      (a.teams.includes(team) || a.role === "admin"));
    agentSel.replaceChildren(el("option", { value: "", text: "— the team's queue —" }),
      ...people.map((a) => el("option", { value: a.email, text: `${a.name} (${a.role})` })));
  }

  async function openTransfer() {
    try {
      await loadDirectory();
    } catch (err) { reportError(err); return; }
    const h = state.detail && state.detail.handoff;
    teamSel.replaceChildren(...(directory.teams || []).map((t) => el("option", { value: t.id, text: t.name })));
    if (h && h.team) teamSel.value = h.team;
    fillAgents();
    noteBox.value = "";
    panel.hidden = false;
    teamSel.focus();
  }

  async function doTransfer(e) {
    e.preventDefault();
    const id = state.selectedId;
    if (!id) return;
    const body = { team: teamSel.value, note: noteBox.value };
    if (agentSel.value) body.agent = agentSel.value;
    submit.disabled = true;
    try {
      const data = await api("POST", `/agent/api/handoffs/${encodeURIComponent(id)}/transfer`, body);
      panel.hidden = true;
      const h = data.handoff || {};
      toast(h.agent ? `Transferred to ${h.agent}.` : `Transferred to ${h.team_name || h.team}.`, false);
    } catch (err) {
      reportError(err);
    } finally {
      submit.disabled = false;
      await desk.refreshAll();
    }
  }

  async function takeOver() {
    const id = state.selectedId;
    if (!id) return;
    takeoverBtn.disabled = true;
    try {
      await api("POST", `/agent/api/handoffs/${encodeURIComponent(id)}/take_over`);
      toast("You have this conversation now.", false);
    } catch (err) {
      reportError(err);
    } finally {
      takeoverBtn.disabled = false;
      await desk.refreshAll();
    }
  }

  // -- notes ----------------------------------------------------------------------------------

  async function addNote(e) {
    e.preventDefault();
    const cid = state.detail && state.detail.handoff && state.detail.handoff.conversation_id;
    const text = noteInput.value.trim();
    if (!cid || !text) return;
    noteAdd.disabled = true;
    try {
      await api("POST", `/agent/api/conversations/${encodeURIComponent(cid)}/notes`, { text });
      noteInput.value = "";
      state.scrollDown = true;
      await desk.loadDetail();
    } catch (err) {
      reportError(err);
    } finally {
      noteAdd.disabled = false;
    }
  }

  function noteNode(n) {
    const where = n.via === "slack" ? " · Slack" : "";
    return el("div", { class: "desk-note", role: "note", data: { noteId: n.id } },
      el("div", { class: "meta" }, el("span", { class: "who", text: `Internal note · ${n.author}${where}` }),
        desk.timeEl(n.created_at)),
      el("div", { class: "body", text: n.text }));
  }

  /** Notes among the messages by time, in a transcript box. */
  function placeNotes(box, notes, transcript) {
    for (const old of box.querySelectorAll(".desk-note")) old.remove();
    if (!Array.isArray(notes) || !notes.length) return;
    const at = new Map((transcript || []).map((m) => [String(m.id), new Date(m.at).getTime()]));
    const msgs = [...box.querySelectorAll(".msg")];
    for (const n of notes) {
      const t = new Date(n.created_at).getTime();
      const next = msgs.find((m) => (at.get(m.dataset.id) || 0) > t);
      if (next) next.before(noteNode(n)); else box.append(noteNode(n));
    }
  }

  // -- after each render ------------------------------------------------------------------------

  function rendered() {
    const d = state.detail;
    const h = d && d.handoff;
    const open = !!(h && (h.state === "queued" || h.state === "claimed"));
    const you = desk.mine(h);
    transferBtn.hidden = !(open && (h.state === "queued" || you));
    takeoverBtn.hidden = !(h && h.state === "claimed" && !you);
    noteForm.hidden = !h;
    if (!h) panel.hidden = true;
    if (h) {
      placeNotes($("#transcript"), d.context.notes, d.context.transcript);
      const before = lastHolder.get(String(h.id));
      if (before && state.me && before === state.me.name && h.agent && h.agent !== before) {
        toast(h.state === "claimed" ? `${h.agent} has taken this conversation over from you.`
                                    : "This conversation was moved on.", false);
      }
      lastHolder.set(String(h.id), h.state === "claimed" ? h.agent : null);
      if (!you) closeMenu();
    }
    if (state.history) placeNotes($("#history-transcript"), state.history.notes, state.history.transcript);
  }

  // -- canned replies: "/" in the reply box ---------------------------------------------------------

  let items = [];
  let active = 0;
  let seq = 0;

  function closeMenu() {
    menu.hidden = true;
    items = [];
  }

  function drawMenu() {
    menu.replaceChildren(...items.map((c, i) => {
      const li = el("li", { role: "option", class: "canned-item", "aria-selected": i === active ? "true" : "false",
        data: { name: c.name } }, el("strong", { text: `/${c.name}` }), el("span", { text: ` ${c.title}` }));
      li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(i); });
      return li;
    }));
    if (!items.length) menu.append(el("li", { class: "none", text: "No canned reply matches." }));
    menu.hidden = false;
  }

  async function search(q) {
    const mySeq = ++seq;
    try {
      const data = await api("GET", `/agent/api/canned?q=${encodeURIComponent(q)}`);
      if (mySeq !== seq) return;
      items = Array.isArray(data.canned) ? data.canned : [];
      active = 0;
      drawMenu();
    } catch (err) { reportError(err); }
  }

  async function choose(i) {
    const c = items[i];
    const id = state.selectedId;
    if (!c || !id) return;
    closeMenu();
    const input = $("#reply-input");
    try {
      const data = await api("GET", `/agent/api/handoffs/${encodeURIComponent(id)}/canned/${encodeURIComponent(c.name)}`);
      if (state.selectedId !== id) return;
      input.value = data.text || "";
      input.dispatchEvent(new Event("input"));      // agent.js keeps the draft
      input.focus();
      input.setSelectionRange(input.value.length, input.value.length);
    } catch (err) { reportError(err); }
  }

  $("#reply-input").addEventListener("input", (e) => {
    const m = /^\/(\S*)$/.exec(e.target.value);
    if (m) search(m[1]); else closeMenu();
  });
  // capture: runs before agent.js's Enter-to-send on the textarea
  $("#reply-form").addEventListener("keydown", (e) => {
    if (menu.hidden || e.target.id !== "reply-input") return;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      if (items.length) active = (active + (e.key === "ArrowDown" ? 1 : items.length - 1)) % items.length;
      drawMenu();
    } else if (e.key === "Enter" || e.key === "Tab") {
      if (!items.length) { closeMenu(); return; }
      choose(active);
    } else if (e.key === "Escape") {
      closeMenu();
    } else return;
    e.preventDefault();
    e.stopPropagation();
  }, true);
  $("#reply-input").addEventListener("blur", () => setTimeout(closeMenu, 150));

  transferBtn.addEventListener("click", () => (panel.hidden ? openTransfer() : (panel.hidden = true)));
  takeoverBtn.addEventListener("click", takeOver);
  teamSel.addEventListener("change", fillAgents);
  panel.addEventListener("submit", doTransfer);
  cancel.addEventListener("click", () => { panel.hidden = true; });
  noteForm.addEventListener("submit", addNote);
  noteInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); noteForm.requestSubmit(); }
  });
  document.addEventListener("omnibot:rendered", rendered);
  rendered();
})();
