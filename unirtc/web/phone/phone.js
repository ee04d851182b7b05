// The unirtc web phone: log in with the unirtc account, then register and call over SIP on a
// WebSocket with JsSIP (served beside this file as jssip.js).
//
// POST session {user, password} answers this person's configuration: SIP identity and WebSocket
// URI, and ICE servers with TURN credentials that expire (renewed before they do). The password
// stays in this page's memory only, for SIP digest; it is never stored.
// With click-to-call on the server, GET guest says what a visitor without an account may call,
// and POST guest answers a configuration for that one call (no registration).
// "?ice=relay" in the page's URL sends all media through TURN (iceTransportPolicy "relay").
// window.phone exposes the live state (UA, session, peer connection) for tests and debugging.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const relayOnly = new URLSearchParams(location.search).get("ice") === "relay";
  const phone = (window.phone = {
    ua: null, session: null, pc: null, config: null,
    registration: "", callState: "no call", ice: "", history: [], guestTarget: null,
  });
  let password = null;
  let refreshTimer = null;

  function status(text) {
    $("status").textContent = text;
  }

  function registration(text) {
    phone.registration = text;
    $("registration").textContent = text;
  }

  function callState(text) {
    phone.callState = text;
    phone.history.push(text);
    $("call-state").textContent = text;
  }

  async function post(path, payload) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
      credentials: "same-origin",
      cache: "no-store",
    });
    let body = {};
    try {
      body = await response.json();
    } catch (error) {
      body = {};
    }
    if (!response.ok) {
      throw new Error(body.error || "HTTP " + response.status);
    }
    return body;
  }

  function fetchConfig(user, secret) {
    return post("session", { user, password: secret });
  }

  function pcConfig() {
    const config = { iceServers: phone.config.iceServers };
    if (relayOnly) config.iceTransportPolicy = "relay";
    return config;
  }

  function callOptions() {
    return { mediaConstraints: { audio: true, video: false }, pcConfig: pcConfig() };
  }

  function targetUri(text) {
    const target = text.trim().replace(/\s+/g, "");
    if (/^sips?:/i.test(target)) return target;
    if (target.includes("@")) return "sip:" + target;
    return "sip:" + target + "@" + phone.config.sip.domain;
  }

  function scheduleRefresh() {
    clearTimeout(refreshTimer);
    const turn = phone.config && phone.config.turn;
    if (!turn || !turn.refresh || phone.config.guest) return;
    refreshTimer = setTimeout(async () => {
      try {
        const fresh = await fetchConfig(phone.config.account, password);
        phone.config.iceServers = fresh.iceServers;
        phone.config.turn = fresh.turn;
      } catch (error) {
        status("Could not renew the TURN credentials: " + error.message);
      }
      scheduleRefresh();
    }, turn.refresh * 1000);
  }

  function start(config) {
    phone.config = config;
    $("login").hidden = true;
    $("guest").hidden = true;
    $("phone").hidden = false;
    status("");
    $("identity").textContent = config.guest
      ? "Calling " + config.target.replace(/^sip:/, "") + " as a guest"
      : "Logged in as " + config.display_name + " <" + config.sip.uri + ">";
    $("dial").hidden = !!config.guest; // a guest may call the click-to-call target only
    $("logout-button").textContent = config.guest ? "Leave" : "Log out";
    const socket = new JsSIP.WebSocketInterface(config.sip.websocket);
    const settings = {
      sockets: [socket],
      uri: config.sip.uri,
      display_name: config.display_name,
      register: !config.guest,
      register_expires: 600,
      session_timers: false,
      user_agent: "unirtc web phone (JsSIP " + JsSIP.version + ")",
    };
    if (!config.guest) {
      settings.password = password;
      settings.authorization_user = config.sip.authorization_user;
    }
    const ua = new JsSIP.UA(settings);
    phone.ua = ua;
    ua.on("connected", () => {
      if (!config.guest) {
        registration("connected, registering…");
      } else if (!phone.session && phone.ua === ua) {
        registration("guest (not registered)");
        ua.call(config.target, callOptions());
      }
    });
    ua.on("disconnected", () => registration("disconnected from the server"));
    ua.on("registered", () => registration("registered"));
    ua.on("unregistered", () => registration("not registered"));
    ua.on("registrationFailed", (e) => registration("failed: " + (e.cause || "unknown")));
    ua.on("newRTCSession", (e) => newSession(e.session, e.originator));
    ua.start();
    scheduleRefresh();
  }

  function attachMedia(pc) {
    if (!pc || pc === phone.pc) return;
    phone.pc = pc;
    phone.ice = pc.iceConnectionState;
    pc.addEventListener("track", (e) => {
      $("remote-audio").srcObject = e.streams[0] || new MediaStream([e.track]);
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      phone.ice = pc.iceConnectionState;
      if (phone.session && phone.pc === pc) {
        $("media").textContent = phone.ice + (relayOnly ? " (through the TURN relay)" : "");
        $("media-line").hidden = false;
      }
    });
  }

  function newSession(session, originator) {
    if (phone.session) {
      if (originator === "remote") session.terminate({ status_code: 486, reason_phrase: "Busy Here" });
      return;
    }
    phone.session = session;
    const peer = session.remote_identity.uri.toString();
    const name = session.remote_identity.display_name;
    if (originator === "remote") {
      $("incoming-text").textContent = "Incoming call from " + (name ? name + " <" + peer + ">" : peer);
      $("incoming").hidden = false;
      callState("incoming call from " + peer);
    } else {
      callState("calling " + peer + "…");
      $("hangup-button").hidden = false;
    }
    attachMedia(session.connection);
    session.on("peerconnection", (e) => attachMedia(e.peerconnection));
    session.on("progress", () => {
      if (originator === "local") callState("ringing " + peer + "…");
    });
    session.on("accepted", () => callState("in call with " + peer));
    session.on("confirmed", () => callState("in call with " + peer));
    session.on("ended", (e) => finished(session, "call ended (" + (e.cause || "hung up") + ")"));
    session.on("failed", (e) => finished(session, "call failed (" + (e.cause || "unknown") + ")"));
    // A relay candidate reaches the other side from anywhere: no need to wait for the rest.
    session.on("icecandidate", (e) => {
      if (e.candidate && e.candidate.type === "relay") e.ready();
    });
  }

  function finished(session, text) {
    if (phone.session !== session) return;
    phone.session = null;
    callState(text);
    status("");
    $("incoming").hidden = true;
    $("hangup-button").hidden = true;
    $("media-line").hidden = true;
    $("remote-audio").srcObject = null;
    if (phone.config && phone.config.guest) logout(text.charAt(0).toUpperCase() + text.slice(1) + ".");
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const user = $("user").value.trim();
    const secret = $("password").value;
    $("login-button").disabled = true;
    status("Logging in…");
    let config;
    try {
      config = await fetchConfig(user, secret);
    } catch (error) {
      status("Login refused: " + error.message);
      $("login-button").disabled = false;
      return;
    }
    $("login-button").disabled = false;
    if (typeof JsSIP === "undefined") {
      status("The phone library (JsSIP) is not installed on this server.");
      return;
    }
    if (!config.sip.websocket) {
      status("This server does not offer SIP over WebSocket.");
      return;
    }
    password = secret;
    $("password").value = "";
    start(config);
  });

  $("dial").addEventListener("submit", (event) => {
    event.preventDefault();
    if (!phone.ua || phone.config.guest) return;
    if (phone.session) {
      status("Hang up first.");
      return;
    }
    const uri = targetUri($("target").value);
    try {
      phone.ua.call(uri, callOptions());
    } catch (error) {
      status("Cannot call " + uri + ": " + error.message);
    }
  });

  $("answer-button").addEventListener("click", () => {
    if (!phone.session) return;
    $("incoming").hidden = true;
    $("hangup-button").hidden = false;
    callState("answering…");
    phone.session.answer(callOptions());
  });

  $("decline-button").addEventListener("click", () => {
    if (phone.session) phone.session.terminate({ status_code: 603, reason_phrase: "Decline" });
  });

  $("hangup-button").addEventListener("click", () => {
    if (phone.session) phone.session.terminate();
  });

  function logout(message) {
    clearTimeout(refreshTimer);
    if (phone.session) phone.session.terminate();
    if (phone.ua) phone.ua.stop();
    phone.ua = null;
    phone.config = null;
    password = null;
    registration("");
    $("phone").hidden = true;
    $("login").hidden = false;
    $("guest").hidden = !phone.guestTarget;
    status(message);
  }

  $("logout-button").addEventListener("click", () => {
    callState("no call");
    logout("Logged out.");
  });

  $("guest-button").addEventListener("click", async () => {
    $("guest-button").disabled = true;
    status("Calling " + phone.guestTarget + "…");
    let config;
    try {
      config = await post("guest", {});
    } catch (error) {
      status("Cannot call now: " + error.message);
      $("guest-button").disabled = false;
      return;
    }
    $("guest-button").disabled = false;
    if (typeof JsSIP === "undefined" || !config.sip.websocket) {
      status("This server cannot take calls from the browser right now.");
      return;
    }
    start(config);
  });

  // Click-to-call: offered when the server names a target for guests.
  fetch("guest", { cache: "no-store" })
    .then((response) => (response.ok ? response.json() : { enabled: false }))
    .then((offer) => {
      if (!offer.enabled) return;
      phone.guestTarget = offer.target.replace(/^sip:/, "");
      $("guest-target").textContent = phone.guestTarget;
      $("guest").hidden = phone.config !== null;
    })
    .catch(() => {});
})();
