/* omnibot agent desk: resolve with an outcome (confirmed), reviews and compensation within
 * authority (README "Review and authority"). Loaded after agent.js and using its hooks
 * (window.omnibotDesk). Server data goes into the DOM as text only, never as HTML. */
"use strict";

(() => {
  const desk = window.omnibotDesk;
  if (!desk) return;
  const { api, el, toast, reportError } = desk;
  const $ = (sel) => document.querySelector(sel);
  const firstName = (name) => String(name || "").trim().split(/\s+/)[0] || "An agent";
  let reviews = [];          // GET /agent/api/reviews: proposals I decide or made
  let comps = [];            // and compensation requests waiting for a decision
  let loading = null;

  // -- the dialog (one, reused) ---------------------------------------------------------

  const dialog = el("dialog", { id: "work-dialog", "aria-labelledby": "work-title" });
  const title = el("h3", { id: "work-title" });
  const fields = el("div", { class: "work-fields" });
  const error = el("p", { id: "work-error", role: "alert" });
  const confirmBtn = el("button", { type: "submit", id: "work-confirm", class: "primary", text: "Confirm" });
  const cancelBtn = el("button", { type: "button", id: "work-cancel", text: "Cancel" });
  const form = el("form", { method: "dialog" }, title, fields, error, el("div", { class: "work-buttons" }, cancelBtn, confirmBtn));
  dialog.append(form);
  document.body.append(dialog);
  const style = el("style", { text: `
    #work-dialog { border: 1px solid #d0d4d9; border-radius: 10px; padding: 20px; width: min(460px, 92vw); }
    #work-dialog form { display: grid; gap: 12px; }
    #work-dialog .work-fields { display: grid; gap: 10px; }
    #work-dialog label { display: grid; gap: 4px; font-weight: 500; }
    #work-dialog .preview { background: #eef7f0; border-radius: 8px; padding: 8px 10px; white-space: pre-wrap; }
    #work-dialog .hint { color: #667085; font-size: 12.5px; margin: 0; }
    #work-error { color: #c62828; margin: 0; min-height: 1em; }
    .work-buttons { display: flex; justify-content: flex-end; gap: 8px; }
    #reviews li, #review-banner { padding: 8px 12px; border-bottom: 1px solid #e3e5e8; display: grid; gap: 4px; }
    #reviews { list-style: none; margin: 0; padding: 0; }
    #reviews .row { display: flex; gap: 6px; flex-wrap: wrap; }
    #review-banner { background: #fff4e5; color: #7a3a00; border-bottom: 1px solid #f3d2a5; }
    #review-banner[data-state="returned"] { background: #fdecea; color: #8a1c1c; }` });
  document.head.append(style);

  /** Open the dialog; ``submit`` returns true to close it (or throws: shown in the dialog). */
  function ask(heading, nodes, label, submit) {
    title.textContent = heading;
    fields.replaceChildren(...nodes);
    error.textContent = "";
    confirmBtn.textContent = label;
    form.onsubmit = async (e) => {
      e.preventDefault();
      confirmBtn.disabled = true;
      try {
        if (await submit()) dialog.close();
      } catch (err) {
        error.textContent = err.message || String(err);
      } finally {
        confirmBtn.disabled = false;
      }
    };
    dialog.showModal();
    const first = fields.querySelector("textarea, input, select");
    if (first) first.focus();
  }
  cancelBtn.addEventListener("click", () => dialog.close());

  // -- resolve with an outcome ------------------------------------------------------------

  function resolveDialog(ref, needsOutcome, path, who) {
    const input = el("textarea", { id: "work-outcome", rows: 3, maxLength: 2000,
                                   placeholder: needsOutcome ? "What was done (required)" : "What was done (optional)" });
    const preview = el("p", { class: "preview", id: "work-preview" });
    const review = reviews.find((r) => r.reference === ref);
    const note = review && review.review.state === "returned"
      ? el("p", { class: "hint", id: "work-returned", text: `Sent back by ${review.review.reviewed_by}: ${review.review.note}` }) : null;
    const show = () => {
      const v = input.value.trim();
      preview.textContent = ref
        ? `${firstName(who)} resolved your complaint ${ref}${v ? `: ${v}` : "."}`
        : `${firstName(who)} marked your request as resolved${v ? `: ${v}` : "."} If there's anything else, just write here.`;
    };
    input.addEventListener("input", show);
    show();
    const nodes = [el("label", null, "Outcome", input), note,
                   el("p", { class: "hint", text: "The customer will be told:" }), preview];
    if (ref) nodes.push(el("p", { class: "hint", text: "If this complaint needs a supervisor's review, it is proposed to them and the customer is told once it is approved." }));
    ask(ref ? `Resolve ${ref}` : "Resolve", nodes, "Resolve", async () => {
      const result = input.value.trim();
      if (needsOutcome && !result) throw new Error("A complaint needs its outcome: the customer is told it.");
      const res = await api("POST", path, { result });
      if (res.proposed) toast(`${ref}: proposed to a supervisor for review; the customer is told once it is approved.`, false);
      else toast(ref ? `${ref} resolved; the customer was told.` : "Resolved.", false);
      await Promise.all([desk.refresh(), loadReviews()]);
      return true;
    });
  }

  // The Resolve buttons (the conversation's, the ticket list's) open the dialog instead of
  // resolving at once: caught before agent.js's own handlers.
  document.addEventListener("click", (e) => {
    const btn = e.target.closest && e.target.closest("#resolve-btn, .resolve-ticket");
    if (!btn) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    const me = desk.me() || {};
    if (btn.id === "resolve-btn") {
      const d = desk.detail();
      if (!d) return;
      const ticket = (d.context || {}).ticket;
      const ref = ticket && ticket.reference && ticket.status !== "resolved" ? ticket.reference : null;
      resolveDialog(ref, !!ref, `/agent/api/handoffs/${encodeURIComponent(d.handoff.id)}/resolve`, me.name);
    } else {
      const ref = btn.closest("[data-ref]").dataset.ref;
      resolveDialog(ref, true, `/agent/api/tickets/${encodeURIComponent(ref)}/resolve`, me.name);
    }
  }, true);

  // -- reviews and compensation requests (left pane) -----------------------------------------

  const pane = el("div", { id: "reviews-pane" },
    el("div", { class: "pane-title" }, el("h2", { text: "Reviews" }), el("span", { id: "reviews-count" })),
    el("ul", { id: "reviews" }));
  const tickets = $("#tickets");
  if (tickets) tickets.after(pane);

  function button(text, cls, onClick) {
    const b = el("button", { type: "button", class: cls, text });
    b.addEventListener("click", async () => {
      b.disabled = true;
      try { await onClick(); } catch (err) { reportError(err); } finally { b.disabled = false; }
    });
    return b;
  }

  async function approveReview(ref) {
    const res = await api("POST", `/agent/api/tickets/${encodeURIComponent(ref)}/approve`);
    toast(res.told ? `${ref} approved; the customer was told.` : `${ref} approved; not told yet: ${res.problem}`, !res.told);
    await Promise.all([desk.refresh(), loadReviews()]);
  }

  function sendBack(ref) {
    const input = el("textarea", { id: "work-note", rows: 3, maxLength: 1000, placeholder: "What should change?" });
    ask(`Send ${ref} back`, [el("label", null, "Note for the agent", input)], "Send back", async () => {
      if (!input.value.trim()) throw new Error("Say what should change.");
      await api("POST", `/agent/api/tickets/${encodeURIComponent(ref)}/return`, { note: input.value.trim() });
      toast(`${ref} sent back.`, false);
      await loadReviews();
      return true;
    });
  }

  async function decide(id, decision) {
    const res = await api("POST", `/agent/api/compensations/${encodeURIComponent(id)}/${decision}`, {});
    const c = res.compensation;
    toast(`${c.kind} of ${c.amount.toFixed(2)} ${c.currency} on ${c.ticket}: ${c.state}.`, false);
    await loadReviews();
  }

  function renderReviews() {
    const list = $("#reviews");
    const items = reviews.map((r) => {
      const v = r.review;
      const label = { pending: "waiting for review", returned: "sent back", approved: "approved, customer not told yet" }[v.state] || v.state;
      const li = el("li", { class: `review-item st-${v.state}`, data: { ref: r.reference } },
        el("div", { class: "row" }, el("strong", { text: r.reference }), el("span", { class: "badge", text: label }),
           el("span", { class: "badge", text: r.severity })),
        el("div", { class: "proposal", text: `${v.proposed_by}: ${v.proposed_result || ""}` }),
        v.state === "returned" && v.note ? el("div", { class: "review-note", text: `${v.reviewed_by}: ${v.note}` }) : null);
      if (r.may_decide) {
        li.append(el("div", { class: "row" },
          button("Approve", "good review-approve", () => approveReview(r.reference)),
          button("Send back…", "review-return", async () => sendBack(r.reference))));
      }
      return li;
    });
    for (const c of comps) {
      const li = el("li", { class: "comp-item", data: { id: c.id } },
        el("div", { class: "row" }, el("strong", { text: c.ticket }),
           el("span", { class: "badge", text: `${c.kind} ${c.amount.toFixed(2)} ${c.currency}` }),
           el("span", { class: "badge", text: "needs approval" })),
        el("div", { text: `${c.requested_by}${c.note ? `: ${c.note}` : ""}` }));
      if (c.may_decide) {
        li.append(el("div", { class: "row" }, button("Approve", "good comp-approve", () => decide(c.id, "approve")),
                                              button("Reject", "comp-reject", () => decide(c.id, "reject"))));
      }
      items.push(li);
    }
    if (!items.length) items.push(el("li", { class: "queue-empty", text: "Nothing to review." }));
    list.replaceChildren(...items);
    $("#reviews-count").textContent = `${reviews.length + comps.length}`;
    renderBanner();
  }

  async function loadReviews() {
    if (!desk.me()) return;
    if (loading) return loading;
    loading = (async () => {
      try {
        const data = await api("GET", "/agent/api/reviews");
        reviews = Array.isArray(data.reviews) ? data.reviews : [];
        comps = Array.isArray(data.compensations) ? data.compensations : [];
        renderReviews();
      } catch (err) {
        if (err.status !== 401) reportError(err);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  // -- the selected conversation: its review state, and compensation --------------------------

  function renderBanner() {
    const d = desk.detail();
    const ticket = d && (d.context || {}).ticket;
    let banner = $("#review-banner");
    const r = ticket && reviews.find((x) => x.reference === ticket.reference);
    if (!r) { if (banner) banner.remove(); return; }
    if (!banner) {
      banner = el("div", { id: "review-banner", role: "status" });
      const head = $("#conv .conv-head");
      if (head) head.after(banner);
    }
    const v = r.review;
    banner.dataset.state = v.state;
    banner.textContent = v.state === "pending"
      ? `In review: ${v.proposed_by} proposed "${v.proposed_result}". The customer is told once a supervisor approves.`
      : v.state === "returned" ? `Sent back by ${v.reviewed_by}: ${v.note}. Resolve again with a new outcome.`
      : `Approved by ${v.reviewed_by}; the customer is not told yet: resolve to tell them.`;
  }

  function compensationDialog(ref) {
    api("GET", "/agent/api/authority").then((auth) => {
      const kind = el("select", { id: "work-kind" }, ...auth.kinds.map((k) => el("option", { value: k, text: k })));
      const amount = el("input", { id: "work-amount", type: "number", min: "0", step: "0.01", required: true });
      const note = el("input", { id: "work-comp-note", maxLength: 500 });
      const limit = auth.limit === null ? "no limit" : `${auth.limit} ${auth.currency}`;
      ask(`Compensation on ${ref}`, [
        el("label", null, "Kind", kind), el("label", null, `Amount (${auth.currency})`, amount),
        el("label", null, "Note", note),
        el("p", { class: "hint", text: `Your authority as ${auth.role}: ${limit}. Above it, a supervisor approves.` }),
      ], "Grant", async () => {
        const value = Number(amount.value);
        if (amount.value === "" || !Number.isFinite(value)) throw new Error("Give the amount.");
        const res = await api("POST", `/agent/api/tickets/${encodeURIComponent(ref)}/compensations`,
                              { kind: kind.value, amount: value, note: note.value.trim() || null });
        const c = res.compensation;
        toast(c.state === "granted" ? `${c.kind} of ${c.amount.toFixed(2)} ${c.currency} granted.`
                                    : `${c.kind} of ${c.amount.toFixed(2)} ${c.currency} is above your authority: sent to a supervisor for approval.`, false);
        await loadReviews();
        return true;
      });
    }).catch(reportError);
  }

  const compBtn = el("button", { type: "button", id: "compensate-btn", text: "Compensation…" });
  compBtn.addEventListener("click", () => {
    const d = desk.detail();
    const ticket = d && (d.context || {}).ticket;
    if (ticket && ticket.reference) compensationDialog(ticket.reference);
  });
  const box = $("#ticket-box");
  if (box) box.append(compBtn);

  document.addEventListener("omnibot:changed", (e) => {
    const ev = e.detail && e.detail.event;
    if (ev === "review" || ev === "resolved" || ev === "resync") loadReviews();
    else setTimeout(renderBanner, 300);        // the selected conversation may have changed
  });
  window.addEventListener("hashchange", () => setTimeout(renderBanner, 300));
  document.addEventListener("click", (e) => {
    if (e.target.closest && e.target.closest(".queue-item")) setTimeout(renderBanner, 400);
  });
  setInterval(loadReviews, 10000);
  const waitForLogin = setInterval(() => {
    if (desk.me()) { clearInterval(waitForLogin); loadReviews(); }
  }, 300);
})();
