// chatsessions console: progressive enhancement only (every page reads without it).
(function () {
  "use strict";

  // Times are shown in the browser's zone: the first visit sends it to the server
  // (a cookie) and reloads once; the header's form changes it later.
  function detectZone() {
    if (document.cookie.split("; ").some(function (c) { return c.indexOf("cs_tz=") === 0; })) return;
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (!zone || !/^[A-Za-z0-9_+\/-]+$/.test(zone)) return;
    document.cookie = "cs_tz=" + zone + "; path=/console; max-age=31536000; samesite=strict";
    if (zone !== document.body.dataset.tz && document.querySelector("[data-current-tz]")) {
      window.location.reload();
    }
  }

  // Pausable auto-refresh of the sessions list (htmx swaps the results only).
  function autoRefresh() {
    var box = document.getElementById("auto-refresh");
    var state = document.getElementById("refresh-state");
    if (!box) return;
    var timer = null;
    box.addEventListener("change", function () {
      if (timer) { clearInterval(timer); timer = null; }
      if (box.checked) {
        timer = setInterval(function () {
          var results = document.getElementById("sessions-results");
          if (!document.hidden && results && window.htmx) window.htmx.trigger(results, "refresh");
        }, 15000);
      }
      if (state) state.textContent = box.checked ? "Auto-refresh on" : "Auto-refresh paused";
    });
  }

  // The daily chart (the table under it holds the same numbers).
  function dailyChart() {
    var holder = document.getElementById("daily-chart");
    var data = document.getElementById("daily-data");
    if (!holder || !data || !window.uPlot) return;
    var chart = JSON.parse(data.textContent);
    var xs = chart.days.map(function (iso) { return Date.parse(iso) / 1000; });
    var style = getComputedStyle(document.documentElement);
    var fg = style.getPropertyValue("--fg").trim() || "#1b1f24";
    var accent = style.getPropertyValue("--accent").trim() || "#0a58ca";
    var width = Math.max(320, holder.clientWidth || 640);
    new window.uPlot({
      width: width,
      height: 240,
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), document.body.dataset.tz); },
      series: [
        {},
        { label: "Sessions", stroke: accent, width: 2, points: { show: true, size: 7 } }
      ],
      axes: [{ stroke: fg }, { stroke: fg }],
      scales: { x: { time: true } }
    }, [xs, chart.sessions], holder);
  }

  document.addEventListener("DOMContentLoaded", function () {
    detectZone();
    autoRefresh();
    dailyChart();
  });
})();
