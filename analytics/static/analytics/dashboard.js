// Draws the dashboard's charts from the JSON the page carries (no inline script: CSP-friendly).
(function () {
  "use strict";
  var node = document.getElementById("analytics-charts");
  if (!node || typeof Chart === "undefined") { return; }
  var charts = JSON.parse(node.textContent);
  Object.keys(charts).forEach(function (key) {
    var canvas = document.getElementById("chart-" + key);
    var spec = charts[key];
    if (!canvas || !spec.labels || !spec.labels.length) { return; }
    new Chart(canvas, {
      type: spec.type,
      data: {labels: spec.labels, datasets: spec.datasets},
      options: {responsive: true, maintainAspectRatio: false, animation: false}
    });
  });
})();
