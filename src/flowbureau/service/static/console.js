// Draws the console's charts. Each chart is a <div data-chart="ID"> next to a
// <script type="application/json" id="ID"> holding a plotly figure ({data, layout}) that the
// server rendered; no inline script is needed, so the CSP can forbid them.
(function () {
  "use strict";
  var FONT = '"WenQuanYi Micro Hei", "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif';

  function draw() {
    if (typeof window.Plotly === "undefined") {
      return;
    }
    var nodes = document.querySelectorAll("[data-chart]");
    Array.prototype.forEach.call(nodes, function (node) {
      var source = document.getElementById(node.getAttribute("data-chart"));
      if (!source) {
        return;
      }
      var figure = JSON.parse(source.textContent);
      var layout = figure.layout || {};
      layout.font = { family: FONT, size: 13 };
      layout.paper_bgcolor = "rgba(0,0,0,0)";
      layout.plot_bgcolor = "rgba(0,0,0,0)";
      window.Plotly.newPlot(node, figure.data, layout, {
        displayModeBar: false,
        responsive: true,
      }).then(function () {
        node.setAttribute("data-drawn", "true");
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
