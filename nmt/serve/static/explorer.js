// The attention explorer page of nmt-serve: plain JavaScript, no libraries, no network but this service.
//
// POST explore {sentence, beam_size?} returns the translation, the pieces and words of both sides, and
// attention.views: for every layer the average over heads and each head, each a (target pieces + EOS) x
// (source pieces + EOS) matrix with its word links. The page draws the chosen view as an SVG heatmap and the
// links between the words of both sentences; hovering a word, a piece label or a cell highlights what belongs to it.
// Text from the model or the user is only ever set through textContent.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const EOS = "</s>";
  const $ = (id) => document.getElementById(id);
  let data = null; // the last explore response
  let current = null; // the view shown

  function el(name, attrs, parent, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    if (parent) parent.appendChild(node);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  // ------------------------------------------------------------------------------------------ the model
  async function loadInfo() {
    try {
      const r = await fetch("health");
      const h = await r.json();
      const m = h.model;
      const shape = m.architecture === "transformer" ? `Transformer, ${m.layers} decoder layers × ${m.heads} heads`
        : m.architecture === "rnn" ? "RNN" : m.architecture;
      $("model-info").textContent = `${m.name} · ${m.src_lang} → ${m.tgt_lang} · ${shape}`;
      $("beam").placeholder = String(m.beam_size);
    } catch (e) {
      $("model-info").textContent = "the service does not answer";
    }
  }

  // ------------------------------------------------------------------------------------------ translate
  async function submit(event) {
    if (event) event.preventDefault();
    const sentence = $("source").value.replace(/\s+/g, " ").trim();
    if (!sentence) {
      setStatus("Type a sentence first.", true);
      return;
    }
    const body = { sentence: sentence };
    const beam = $("beam").value.trim();
    if (beam) body.beam_size = Number(beam);
    $("translate").disabled = true;
    setStatus("Translating…", false);
    try {
      const r = await fetch("explore", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await r.json();
      if (!r.ok) {
        setStatus(answer.error || `error ${r.status}`, true);
        return;
      }
      data = answer;
      setStatus("", false);
      render();
    } catch (e) {
      setStatus(`The service could not be reached (${e.message}).`, true);
    } finally {
      $("translate").disabled = false;
    }
  }

  function render() {
    $("result").hidden = false;
    $("translation").textContent = data.translation;
    $("score").textContent = `score ${data.score.toFixed(3)} (length-penalised log-probability)` +
      (data.truncated ? " · the sentence was truncated to the model's maximum length" : "");
    const att = data.attention;
    $("note").hidden = !data.note;
    $("note").textContent = data.note || "";
    $("views").hidden = !att;
    if (!att) {
      current = null;
      drawWords([]);
      clear($("heatmap"));
      $("heatmap-wrap").hidden = true;
      return;
    }
    $("heatmap-wrap").hidden = false;
    const layer = $("layer");
    clear(layer);
    if (att.architecture !== "transformer") {
      layer.appendChild(new Option("the decoder's attention", "rnn"));
    } else {
      for (let l = 0; l < att.layers; l++) {
        const where = l === att.layers - 1 ? " (top)" : l === 0 ? " (bottom)" : "";
        layer.appendChild(new Option(`${l}${where}`, String(l)));
      }
    }
    layer.disabled = att.layers < 2;
    const initial = att.views[att.default];
    layer.value = initial.layer === null ? "rnn" : String(initial.layer);
    fillHeads(att.default);
    show(att.default);
  }

  function viewsOfLayer() {
    const value = $("layer").value;
    const layer = value === "rnn" ? null : Number(value);
    return data.attention.views.map((v, i) => [v, i]).filter(([v]) => v.layer === layer);
  }

  function fillHeads(selected) {
    const head = $("head");
    clear(head);
    const views = viewsOfLayer();
    for (const [v, i] of views) head.appendChild(new Option(v.label, String(i)));
    head.disabled = views.length < 2;
    const keep = views.find(([, i]) => i === selected);
    head.value = String(keep ? selected : views[0][1]);
  }

  function show(index) {
    current = data.attention.views[index];
    drawWords(current.links);
    drawHeatmap(current.matrix);
  }

  // ------------------------------------------------------------------------------------------ words and links
  function drawWords(links) {
    const svg = $("words");
    clear(svg);
    const top = 26, bottom = 116, left = 92, gap = 16;
    el("text", { x: 8, y: top, class: "side" }, svg, "source");
    el("text", { x: 8, y: bottom, class: "side" }, svg, "translation");
    const place = (words, y, cls) => {
      let x = left;
      return words.map((w, i) => {
        const t = el("text", { x: x, y: y, class: `word ${cls}`, "data-word": String(i) }, svg, w);
        const width = t.getComputedTextLength() || 8 * w.length;
        const box = { x: x, width: width, node: t };
        x += width + gap;
        return box;
      });
    };
    const src = place(data.source_words, top, "src-word");
    const tgt = place(data.target_words, bottom, "tgt-word");
    for (const [i, j] of links) {
      if (!src[i] || !tgt[j]) continue;
      const line = el("line", {
        x1: src[i].x + src[i].width / 2, y1: top + 8,
        x2: tgt[j].x + tgt[j].width / 2, y2: bottom - 16,
        class: "link", "data-src": String(i), "data-tgt": String(j),
      });
      svg.insertBefore(line, svg.firstChild); // under the words
    }
    const right = Math.max(left, ...src.concat(tgt).map((b) => b.x + b.width)) + 12;
    svg.setAttribute("width", right);
    svg.setAttribute("height", bottom + 14);
    src.forEach((b, i) => hoverable(b.node, () => ({ srcWords: [i] })));
    tgt.forEach((b, j) => hoverable(b.node, () => ({ tgtWords: [j] })));
  }

  // ------------------------------------------------------------------------------------------ heatmap
  function color(v) {
    const a = [247, 251, 255], b = [8, 48, 107]; // white to dark blue, linear in the weight
    const t = Math.max(0, Math.min(1, v));
    return `rgb(${a.map((x, k) => Math.round(x + (b[k] - x) * t)).join(",")})`;
  }

  function drawHeatmap(matrix) {
    const svg = $("heatmap");
    clear(svg);
    const rows = data.target_tokens.concat([EOS]);
    const cols = data.source_tokens.concat([EOS]);
    const charW = 7.3;
    const rowLabelW = Math.ceil(Math.max(...rows.map((p) => p.length)) * charW) + 14;
    const colLabelH = Math.ceil(Math.max(...cols.map((p) => p.length)) * charW * 0.75) + 18;
    const room = Math.max(300, $("heatmap-wrap").clientWidth - rowLabelW - 20);
    const cell = Math.max(12, Math.min(30, Math.floor(room / cols.length)));
    svg.setAttribute("width", rowLabelW + cols.length * cell + 70);
    svg.setAttribute("height", colLabelH + rows.length * cell + 10);
    svg.setAttribute("data-rows", String(rows.length));
    svg.setAttribute("data-cols", String(cols.length));
    const cellsG = el("g", { class: "cells", transform: `translate(${rowLabelW},${colLabelH})` }, svg);
    const rowG = el("g", { class: "row-labels" }, svg);
    const colG = el("g", { class: "col-labels" }, svg);
    el("g", { class: "bands", transform: `translate(${rowLabelW},${colLabelH})` }, svg);
    rows.forEach((p, r) => {
      const t = el("text", {
        x: rowLabelW - 6, y: colLabelH + r * cell + cell / 2 + 4, "text-anchor": "end",
        class: "row-label", "data-row": String(r),
      }, rowG, p);
      hoverable(t, () => ({ rows: [r] }));
    });
    cols.forEach((p, c) => {
      const x = rowLabelW + c * cell + cell / 2 + 4, y = colLabelH - 6;
      const t = el("text", {
        x: x, y: y, transform: `rotate(-50 ${x} ${y})`, class: "col-label", "data-col": String(c),
      }, colG, p);
      hoverable(t, () => ({ cols: [c] }));
    });
    matrix.forEach((row, r) => {
      row.forEach((v, c) => {
        const rect = el("rect", {
          x: c * cell, y: r * cell, width: cell, height: cell, fill: color(v),
          class: "cell", "data-row": String(r), "data-col": String(c),
        }, cellsG);
        el("title", {}, rect, `${rows[r]} → ${cols[c]}: ${v.toFixed(3)}`);
        hoverable(rect, () => ({ rows: [r], cols: [c] }));
      });
    });
    svg.dataset.cell = String(cell);
    legend(svg, rowLabelW + cols.length * cell + 14, colLabelH, Math.min(rows.length * cell, 160));
  }

  // A vertical colour bar from weight 0 (bottom) to 1 (top), since the scale is absolute, not per matrix.
  function legend(svg, x, y, height) {
    const defs = el("defs", {}, svg);
    const grad = el("linearGradient", { id: "legend-gradient", x1: 0, y1: 1, x2: 0, y2: 0 }, defs);
    for (const t of [0, 0.25, 0.5, 0.75, 1]) el("stop", { offset: t, "stop-color": color(t) }, grad);
    el("rect", { x: x, y: y, width: 12, height: height, fill: "url(#legend-gradient)", stroke: "#ccc" }, svg);
    el("text", { x: x + 16, y: y + 9 }, svg, "1");
    el("text", { x: x + 16, y: y + height }, svg, "0");
  }

  // ------------------------------------------------------------------------------------------ highlighting
  function hoverable(node, what) {
    node.addEventListener("mouseenter", () => highlight(what()));
    node.addEventListener("mouseleave", () => highlight(null));
  }

  // Expand a hovered thing to everything it touches: a word to its pieces (rows / columns) and its links, a piece
  // to its word. EOS rows and columns belong to no word.
  function highlight(what) {
    const words = $("words"), heat = $("heatmap");
    for (const n of document.querySelectorAll("#words .hl, #heatmap .hl")) n.classList.remove("hl");
    words.classList.toggle("focus", !!what);
    const bands = heat.querySelector(".bands");
    if (bands) clear(bands);
    if (!what || !data) return;
    const srcWords = new Set(what.srcWords || []), tgtWords = new Set(what.tgtWords || []);
    const cols = new Set(what.cols || []), rows = new Set(what.rows || []);
    data.source_token_words.forEach((w, c) => { if (srcWords.has(w)) cols.add(c); });
    data.target_token_words.forEach((w, r) => { if (tgtWords.has(w)) rows.add(r); });
    for (const c of cols) if (c < data.source_token_words.length) srcWords.add(data.source_token_words[c]);
    for (const r of rows) if (r < data.target_token_words.length) tgtWords.add(data.target_token_words[r]);
    for (const i of srcWords) mark(`#words .src-word[data-word="${i}"]`);
    for (const j of tgtWords) mark(`#words .tgt-word[data-word="${j}"]`);
    for (const line of words.querySelectorAll(".link")) {
      if (srcWords.has(Number(line.dataset.src)) || tgtWords.has(Number(line.dataset.tgt))) line.classList.add("hl");
    }
    if (!bands) return;
    const cell = Number(heat.dataset.cell);
    const nRows = Number(heat.getAttribute("data-rows")), nCols = Number(heat.getAttribute("data-cols"));
    for (const r of rows) {
      mark(`#heatmap .row-label[data-row="${r}"]`);
      el("rect", { x: 0, y: r * cell, width: nCols * cell, height: cell, class: "band row-band" }, bands);
    }
    for (const c of cols) {
      mark(`#heatmap .col-label[data-col="${c}"]`);
      el("rect", { x: c * cell, y: 0, width: cell, height: nRows * cell, class: "band col-band" }, bands);
    }
  }

  function mark(selector) {
    for (const n of document.querySelectorAll(selector)) n.classList.add("hl");
  }

  // ------------------------------------------------------------------------------------------ wiring
  $("form").addEventListener("submit", submit);
  $("source").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) submit(e);
  });
  $("layer").addEventListener("change", () => {
    const views = viewsOfLayer();
    // keep the same kind of view (average, or the same head) on the new layer
    const same = views.find(([v]) => current && JSON.stringify(v.heads) === JSON.stringify(current.heads));
    const index = (same || views[0])[1];
    fillHeads(index);
    show(index);
  });
  $("head").addEventListener("change", () => show(Number($("head").value)));
  loadInfo();
})();
