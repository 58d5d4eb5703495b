/* omnibot agent desk: "Reveal" for a supervisor or an admin (README "Privacy"): the conversation's
 * texts, customer, captured details and notes as stored, in clear, through
 * POST /agent/api/conversations/{id}/reveal (audited, with the reason asked for here). The desk
 * otherwise shows e-mail addresses, phone numbers and IBANs masked to everyone but the holder.
 * Loaded after agent.js; uses window.omnibotDesk and redraws on "omnibot:rendered".
 * Server data goes into the DOM as text only, never as HTML. */
"use strict";

(() => {
  const desk = window.omnibotDesk;
  if (!desk) return;
  const { state, api, el, reportError, mine } = desk;
  const $ = (sel) => document.querySelector(sel);
  const MAY_REVEAL = new Set(["supervisor", "admin"]);   // handoff/roles.py: "reveal" is supervisor-only

  // -- the controls, added once --------------------------------------------------------------

  const title = "Show the personal data in clear (written to the audit log)";
  const convBtn = el("button", { type: "button", id: "reveal-btn", text: "Reveal", hidden: true, title });
  const historyBtn = el("button", { type: "button", id: "history-reveal-btn", text: "Reveal", hidden: true, title });
  $("#conv .actions").append(convBtn);
  $("#history .actions").prepend(historyBtn);

  const heading = el("h3", { id: "reveal-title" });
  const body = el("div", { id: "reveal-body" });
  const closeBtn = el("button", { type: "submit", id: "reveal-close", text: "Close" });
  const dialog = el("dialog", { id: "reveal-dialog", "aria-labelledby": "reveal-title" },
    el("form", { method: "dialog" }, heading, body, el("div", { class: "reveal-buttons" }, closeBtn)));
  document.body.append(dialog);
  document.head.append(el("style", { text: `
    #reveal-dialog { border: 1px solid #d0d4d9; border-radius: 10px; padding: 20px; width: min(640px, 94vw); max-height: 86vh; }
    #reveal-dialog form { display: grid; gap: 12px; }
    #reveal-body { display: grid; gap: 14px; overflow-y: auto; max-height: 64vh; }
    #reveal-body h4 { margin: 0 0 4px; font-size: 12px; text-transform: uppercase; letter-spacing: .05em; color: #667085; }
    #reveal-body dl { margin: 0; display: grid; grid-template-columns: max-content 1fr; gap: 3px 10px; }
    #reveal-body dt { color: #667085; }
    #reveal-body dd { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
    #reveal-body ol { margin: 0; padding-left: 18px; display: grid; gap: 4px; }
    #reveal-body li { white-space: pre-wrap; overflow-wrap: anywhere; }
    #reveal-body .who { font-weight: 600; margin-right: 6px; }
    .reveal-note { color: #b54708; font-size: 12.5px; margin: 0; }
    .reveal-buttons { display: flex; justify-content: flex-end; }` }));

  // -- which conversation, and whether to offer it -------------------------------------------

  const mayReveal = () => !!(state.me && MAY_REVEAL.has(state.me.role));

  function shownConversation() {
    if (state.historyId) return state.historyId;
    const d = state.detail;
    const conv = d && d.context && d.context.conversation;
    return (conv && conv.id) || (d && d.handoff && d.handoff.conversation_id) || null;
  }

  function update() {
    const d = state.detail;
    // the holder already sees everything in clear: no need for an audited reveal
    convBtn.hidden = !(mayReveal() && state.selectedId && d && !mine(d.handoff));
    historyBtn.hidden = !(mayReveal() && state.historyId);
  }

  // -- reveal --------------------------------------------------------------------------------

  function pairs(obj) {
    const rows = Object.entries(obj || {}).map(([k, v]) => [
      el("dt", { text: k }), el("dd", { text: typeof v === "string" ? v : JSON.stringify(v) })]);
    return rows.length ? el("dl", null, ...rows.flat()) : el("p", { class: "none", text: "None." });
  }

  function section(name, ...content) {
    return el("section", null, el("h4", { text: name }), ...content);
  }

  function render(data) {
    const customer = data.customer || {};
    heading.textContent = `In clear: ${customer.name || "customer"} · ${data.conversation_id}`;
    const idents = (customer.identities || []).map((i) => [i.channel, i.external_id || ""]);
    const msgs = (data.transcript || []).map((m) => el("li", { class: `role-${m.role}` },
      el("span", { class: "who", text: m.role === "agent" ? (m.sender || "Agent") : m.role }), m.text || ""));
    const notes = (data.notes || []).map((n) => el("li", null,
      el("span", { class: "who", text: n.author || n.agent || "note" }), n.text || ""));
    body.replaceChildren(
      el("p", { class: "reveal-note", text: `Revealed to ${data.revealed_by}; this was written to the audit log. `
        + "Card numbers and security codes were never stored, so they stay masked." }),
      section("Customer", pairs({ name: customer.name || "", ...Object.fromEntries(idents),
        ...(customer.attributes || {}) })),
      section("Captured details", pairs(data.slots)),
      section("Transcript", msgs.length ? el("ol", null, ...msgs) : el("p", { class: "none", text: "No messages." })),
      section("Notes", notes.length ? el("ol", null, ...notes) : el("p", { class: "none", text: "No notes." })));
    dialog.showModal();
  }

  async function reveal(button) {
    const cid = shownConversation();
    if (!cid) return;
    const reason = window.prompt("Why do you need the personal data in clear? (kept in the audit log)", "");
    if (reason === null) return;
    button.disabled = true;
    try {
      render(await api("POST", `/agent/api/conversations/${encodeURIComponent(cid)}/reveal`, { reason }));
    } catch (err) {
      reportError(err);
    } finally {
      button.disabled = false;
    }
  }

  // the clear text is not left in the page: cleared as the Close button submits (synchronously, before the
  // dialog hides) and on "close" (Escape), which the browser fires in a later task
  const clear = () => { body.replaceChildren(); heading.textContent = ""; };
  dialog.querySelector("form").addEventListener("submit", clear);
  dialog.addEventListener("close", clear);
  convBtn.addEventListener("click", (e) => reveal(e.currentTarget));
  historyBtn.addEventListener("click", (e) => reveal(e.currentTarget));
  document.addEventListener("omnibot:rendered", update);
  update();
})();
