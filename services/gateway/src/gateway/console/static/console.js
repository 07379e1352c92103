// Live notifications: an EventSource on every element with data-stream (the notifier's SSE, proxied by the
// gateway console). Each "notification" event is prepended as a list item built with textContent (no HTML
// from the server is interpreted). EventSource reconnects by itself and resumes with Last-Event-ID.
(function () {
  "use strict";

  function item(n) {
    var li = document.createElement("li");
    li.className = "unread fresh";
    li.dataset.notificationId = n.notification_id || "";
    var title = document.createElement("strong");
    title.textContent = n.title || "notification";
    li.appendChild(title);
    li.appendChild(document.createTextNode(" · " + (n.author_id || "") + " in "));
    var channel = document.createElement("code");
    channel.textContent = n.channel_id || "";
    li.appendChild(channel);
    var when = document.createElement("span");
    when.className = "small";
    when.textContent = " · " + (n.created_at ? new Date(n.created_at).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "");
    li.appendChild(when);
    li.appendChild(document.createElement("br"));
    li.appendChild(document.createTextNode(n.body || ""));
    return li;
  }

  function connect(list) {
    var status = document.getElementById("live-status");
    var source = new EventSource(list.dataset.stream);
    function show(state, text) {
      if (status) { status.dataset.state = state; status.textContent = text; }
    }
    source.addEventListener("open", function () { show("open", "connected"); });
    source.addEventListener("error", function () {
      show(source.readyState === EventSource.CLOSED ? "closed" : "connecting", source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
    });
    source.addEventListener("notification", function (event) {
      var n;
      try { n = JSON.parse(event.data); } catch (e) { return; }
      if (n.notification_id && list.querySelector('[data-notification-id="' + CSS.escape(n.notification_id) + '"]')) { return; }
      list.insertBefore(item(n), list.firstChild);
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-stream]").forEach(connect);
  });
})();
