// Live rows: the server pushes a charger or connector whenever it changes (Server-Sent Events).
(function () {
  var live = document.getElementById("live");
  var source = new EventSource("/events");
  function apply(selector, data) {
    var row = document.querySelector(selector);
    if (!row) return;
    row.querySelectorAll("[data-field]").forEach(function (cell) {
      var name = cell.getAttribute("data-field"), value = data[name];
      if (name === "online") {
        value = data.online ? "online" : "offline";
        cell.className = value;
      }
      if (value !== undefined && cell.textContent !== String(value)) cell.textContent = value;
    });
  }
  source.addEventListener("open", function () { live.textContent = "live updates: on"; });
  source.addEventListener("error", function () { live.textContent = "live updates: reconnecting…"; });
  source.addEventListener("charger", function (e) {
    var d = JSON.parse(e.data);
    apply('tr[data-charger="' + CSS.escape(d.id) + '"]', d);
  });
  source.addEventListener("connector", function (e) {
    var d = JSON.parse(e.data);
    apply('tr[data-connector="' + CSS.escape(d.charge_point + "/" + d.connector) + '"]', d);
  });
})();
