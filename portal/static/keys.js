// WebAuthn ceremonies of the portal (enrol a security key, log in with it). Served as a static
// file: the CSP allows no inline script. The server gives the options as JSON in the button's
// data-options, and checks everything the browser sends back (challenge, origin, RP id, user
// verification, counter); this file only converts between JSON and the browser's buffers.
"use strict";
(function () {
  function toBuffer(b64url) {
    var b64 = b64url.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64url(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(o) {
    o.challenge = toBuffer(o.challenge);
    o.user.id = toBuffer(o.user.id);
    (o.excludeCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return o;
  }

  function requestOptions(o) {
    o.challenge = toBuffer(o.challenge);
    (o.allowCredentials || []).forEach(function (c) { c.id = toBuffer(c.id); });
    return o;
  }

  function credentialJson(cred) {
    var r = cred.response;
    var response = { clientDataJSON: toB64url(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toB64url(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toB64url(r.authenticatorData);
      response.signature = toB64url(r.signature);
      if (r.userHandle) { response.userHandle = toB64url(r.userHandle); }
    }
    return {
      id: cred.id,
      rawId: toB64url(cred.rawId),
      type: cred.type,
      response: response,
      clientExtensionResults: cred.getClientExtensionResults(),
      authenticatorAttachment: cred.authenticatorAttachment || undefined,
    };
  }

  function showError(message) {
    var box = document.getElementById("key-error");
    document.getElementById("key-error-text").textContent = message;
    box.hidden = false;
    box.setAttribute("tabindex", "-1");
    box.focus();
  }

  function run(button) {
    var options = JSON.parse(button.dataset.options);
    var ceremony = button.dataset.keyCeremony === "create"
      ? navigator.credentials.create({ publicKey: creationOptions(options) })
      : navigator.credentials.get({ publicKey: requestOptions(options) });
    button.disabled = true;
    ceremony.then(function (cred) {
      return fetch(button.dataset.url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": button.dataset.csrf },
        body: JSON.stringify(credentialJson(cred)),
      }).then(function (answer) { return answer.json(); });
    }).then(function (result) {
      if (result.redirect) { window.location.assign(result.redirect); return; }
      showError(result.error || button.dataset.failure);
      // The server spent its challenge: another try starts from a fresh page.
      button.dataset.stale = "yes";
      button.disabled = false;
    }).catch(function () {
      showError(button.dataset.failure);
      button.disabled = false;
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var button = document.getElementById("key-action");
    if (!button) { return; }
    if (!window.PublicKeyCredential) {
      showError("Ce navigateur ne sait pas utiliser les clés de sécurité.");
      button.disabled = true;
      return;
    }
    button.addEventListener("click", function () {
      if (button.dataset.stale) { window.location.reload(); return; }
      run(button);
    });
  });
})();
