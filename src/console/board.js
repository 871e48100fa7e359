// The alarm board, live. Without this script the board is a plain page with a refresh link.
// With it: the page listens on the console's event stream (/console/live) and, on any change,
// fetches the board again and puts in what changed. A card whose alarm has not changed is
// kept as it is (with whatever is being chosen in its forms); a new alarm is marked "New",
// announced and beeps; a fall that becomes a long lie is announced and beeps twice. Sound
// needs a first click or key press where the browser blocks it.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var status = document.getElementById("live-status");
  var announcer = document.getElementById("announce");
  var AudioCtx = window.AudioContext || window.webkitAudioContext;
  var audio = null;
  var beeps = 0;

  function say(text, state) {
    status.textContent = text;
    status.setAttribute("data-live-state", state);
  }

  function unlock() {
    if (!audio && AudioCtx) {
      audio = new AudioCtx();
    }
    if (audio && audio.state === "suspended") {
      audio.resume();
    }
  }

  // One short tone, twice for a long lie. Counted on the board (data-beeps) so that a test
  // can tell it was played.
  function beep(times) {
    beeps += times;
    board.setAttribute("data-beeps", String(beeps));
    unlock();
    if (!audio) {
      return;
    }
    for (var i = 0; i < times; i += 1) {
      var start = audio.currentTime + i * 0.35;
      var tone = audio.createOscillator();
      var gain = audio.createGain();
      tone.frequency.value = 880;
      gain.gain.setValueAtTime(0.25, start);
      gain.gain.exponentialRampToValueAtTime(0.001, start + 0.25);
      tone.connect(gain);
      gain.connect(audio.destination);
      tone.start(start);
      tone.stop(start + 0.3);
    }
  }

  // Puts the fresh list's cards into the current list, keeping unchanged cards in place.
  function reconcile(current, fresh, found) {
    // Only care alarms cue: technical ones are quieter by design, resolved ones are not news.
    var cue = current.hasAttribute("data-cue");
    var old = {};
    Array.prototype.forEach.call(current.children, function (card) {
      old[card.id] = card;
    });
    var wanted = Array.prototype.map.call(fresh.children, function (card) {
      var kept = old[card.id];
      if (kept && kept.getAttribute("data-version") === card.getAttribute("data-version")) {
        var age = card.querySelector("[data-ago]");
        var keptAge = kept.querySelector("[data-ago]");
        if (age && keptAge) {
          keptAge.textContent = age.textContent;
        }
        return kept;
      }
      var node = document.importNode(card, true);
      if (!cue) {
        return node;
      }
      if (!kept) {
        node.classList.add("fresh");
        var title = node.querySelector(".alarm-title");
        var badge = document.createElement("strong");
        badge.className = "badge-new";
        badge.textContent = "New";
        title.insertBefore(badge, title.firstChild);
        found.added.push(node.getAttribute("data-summary"));
      } else if (node.getAttribute("data-long-lie") === "yes" &&
                 kept.getAttribute("data-long-lie") !== "yes") {
        found.longLies.push(node.getAttribute("data-summary"));
      }
      return node;
    });
    var cursor = current.firstElementChild;
    wanted.forEach(function (node) {
      if (node === cursor) {
        cursor = cursor.nextElementSibling;
      } else {
        current.insertBefore(node, cursor);
      }
    });
    while (cursor) {
      var next = cursor.nextElementSibling;
      current.removeChild(cursor);
      cursor = next;
    }
  }

  var busy = false;
  var again = false;

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(window.location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.redirected || !response.ok) {
          throw new Error("signed out");
        }
        return response.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var found = { added: [], longLies: [] };
        doc.querySelectorAll("[data-live-list]").forEach(function (fresh) {
          var current = document.getElementById(fresh.id);
          if (current) {
            reconcile(current, fresh, found);
          }
        });
        doc.querySelectorAll("[data-live-part]").forEach(function (fresh) {
          var current = document.getElementById(fresh.id);
          if (current) {
            current.textContent = fresh.textContent;
          }
        });
        if (found.longLies.length) {
          beep(2);
          announcer.textContent = "Long lie: " + found.longLies.join("; ");
        } else if (found.added.length) {
          beep(1);
          announcer.textContent = "New alarm: " + found.added.join("; ");
        }
        say("Live: new alarms appear here as they arrive. Updated " +
            new Date().toLocaleTimeString() + ".", "on");
      })
      .catch(function () {
        say("Live updates have stopped: your session may have ended. Refresh the board, " +
            "signing in again if asked.", "stopped");
      })
      .then(function () {
        busy = false;
        if (again) {
          again = false;
          refresh();
        }
      });
  }

  document.addEventListener("click", unlock);
  document.addEventListener("keydown", unlock);
  var note = document.getElementById("sound-note");
  note.hidden = false;
  document.getElementById("sound-test").addEventListener("click", function () {
    unlock();
    beep(1);
  });

  say("Connecting to live updates…", "connecting");
  var source = new EventSource("/console/live");
  source.addEventListener("open", function () {
    board.setAttribute("data-live", "open");
    // Catch up on whatever changed while the stream was not open.
    refresh();
  });
  ["alarm", "technical_alarm", "lagged"].forEach(function (topic) {
    source.addEventListener(topic, refresh);
  });
  source.addEventListener("error", function () {
    board.setAttribute("data-live", "closed");
    if (source.readyState === EventSource.CLOSED) {
      say("Live updates have stopped. Refresh the board, signing in again if asked.",
          "stopped");
    } else {
      say("Live updates were interrupted: reconnecting…", "connecting");
    }
  });
  // Ages move on even when nothing happens.
  window.setInterval(refresh, 30000);
})();
