// The gallery: filter and sort galaxies by a chosen answer's posterior. No libraries.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("galaxy-data").textContent);
  const answers = data.answers, questions = data.questions;
  const answerSelect = document.getElementById("answer");
  const minInput = document.getElementById("min");
  const secondSelect = document.getElementById("answer2");
  const secondMin = document.getElementById("min2");
  const sortSelect = document.getElementById("sort");
  const gallery = document.getElementById("gallery");
  const count = document.getElementById("count");

  answers.forEach(function (name, i) {
    [answerSelect, secondSelect].forEach(function (select) {
      const option = document.createElement("option");
      option.value = String(i);
      option.textContent = name;
      select.appendChild(option);
    });
  });

  // Predictions of a model without an OOD reference have no ood_score to sort by.
  if (!data.galaxies.some(function (g) { return g.ood !== null; })) sortSelect.querySelector("option[value=ood]").remove();

  // Mean width of the 90% intervals over the questions likely to be asked.
  data.galaxies.forEach(function (g) {
    let width = 0, weight = 0;
    questions.forEach(function (q, qi) {
      q.answers.forEach(function (a) { width += g.asked[qi] * (g.q95[a] - g.q05[a]); weight += g.asked[qi]; });
    });
    g.uncertainty = weight > 0 ? width / weight : 0;
  });

  function answerRow(g, a, chosen) {
    const row = document.createElement("div");
    row.className = "a" + (a === chosen ? " chosen" : "");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = answers[a].split("_").slice(1).join("_");
    label.title = answers[a];
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = (100 * g.fraction[a]).toFixed(1) + "%";
    const ci = document.createElement("span");
    ci.className = "ci";
    ci.style.left = (100 * g.q05[a]).toFixed(1) + "%";
    ci.style.width = (100 * (g.q95[a] - g.q05[a])).toFixed(1) + "%";
    track.append(bar, ci);
    const val = document.createElement("span");
    val.className = "val";
    val.textContent = g.fraction[a].toFixed(2);
    row.title = answers[a] + ": " + g.fraction[a].toFixed(3) + " [" + g.q05[a].toFixed(3) + ", " + g.q95[a].toFixed(3) + "]";
    row.append(label, track, val);
    return row;
  }

  function card(g, chosen) {
    const div = document.createElement("div");
    div.className = "card";
    div.dataset.id = g.id;
    if (g.image) {
      const img = document.createElement("img");
      img.src = g.image;
      img.alt = g.id;
      div.appendChild(img);
    } else {
      const none = document.createElement("div");
      none.className = "noimg";
      none.textContent = "no image";
      div.appendChild(none);
    }
    const id = document.createElement("div");
    id.className = "id";
    id.textContent = g.id;
    if (g.ood !== null) {
      const ood = document.createElement("span");
      ood.className = "ood" + (g.ood > 1 ? " flagged" : "");
      ood.textContent = " ood " + g.ood.toFixed(2);
      ood.title = "distance from the training distribution; > 1 is flagged (about 5% of galaxies like the training ones)";
      id.appendChild(ood);
    }
    div.appendChild(id);
    questions.forEach(function (q, qi) {
      const block = document.createElement("div");
      block.className = "q";
      block.style.opacity = String(0.25 + 0.75 * g.asked[qi]);
      const title = document.createElement("div");
      title.className = "qname";
      title.textContent = q.name + " (asked " + g.asked[qi].toFixed(2) + ")";
      block.appendChild(title);
      q.answers.forEach(function (a) { block.appendChild(answerRow(g, a, chosen)); });
      div.appendChild(block);
    });
    return div;
  }

  function render() {
    const chosen = Number(answerSelect.value);
    const min = Number(minInput.value) || 0;
    const second = secondSelect.value === "" ? -1 : Number(secondSelect.value);
    const min2 = Number(secondMin.value) || 0;
    const shown = data.galaxies.filter(function (g) {
      return g.fraction[chosen] >= min && (second < 0 || g.fraction[second] >= min2);
    });
    const key = sortSelect.value;
    shown.sort(function (x, y) {
      if (key === "fraction") return y.fraction[chosen] - x.fraction[chosen];
      if (key === "certain") return (x.q95[chosen] - x.q05[chosen]) - (y.q95[chosen] - y.q05[chosen]);
      if (key === "uncertain") return y.uncertainty - x.uncertainty;
      if (key === "informative") return y.information - x.information;
      if (key === "ood") return (y.ood === null ? -1 : y.ood) - (x.ood === null ? -1 : x.ood);
      return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
    });
    gallery.replaceChildren.apply(gallery, shown.map(function (g) { return card(g, chosen); }));
    count.textContent = shown.length + " of " + data.galaxies.length + " galaxies";
    let state = "answer=" + encodeURIComponent(answers[chosen]) + "&min=" + min + "&sort=" + key;
    if (second >= 0) state += "&answer2=" + encodeURIComponent(answers[second]) + "&min2=" + min2;
    history.replaceState(null, "", "#" + state);
  }

  // A view can be shared as a link: #answer=bar_strong&min=0.5&sort=certain&answer2=has-spiral-arms_yes&min2=0.5
  function applyHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    const index = function (name) { return answers.indexOf(params.get(name)); };
    if (index("answer") >= 0) answerSelect.value = String(index("answer"));
    if (params.has("min")) minInput.value = params.get("min");
    if (params.has("sort")) sortSelect.value = params.get("sort");
    secondSelect.value = index("answer2") >= 0 ? String(index("answer2")) : "";
    if (params.has("min2")) secondMin.value = params.get("min2");
  }
  [answerSelect, minInput, secondSelect, secondMin, sortSelect].forEach(function (el) { el.addEventListener("input", render); el.addEventListener("change", render); });
  window.addEventListener("hashchange", function () { applyHash(); render(); });
  applyHash();
  render();
})();
