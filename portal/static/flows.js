// Flow deposit: the file is sent as the raw request body (streamed and encrypted by the server
// as it arrives, then validated); the browser then shows the acknowledgement or the report.
(function () {
  "use strict";
  var form = document.getElementById("flow-form");
  if (!form) { return; }
  var input = document.getElementById("flow-file");
  var bar = document.getElementById("flow-progress");
  var status = document.getElementById("flow-status");
  var button = document.getElementById("flow-submit");
  var maxBytes = parseInt(form.getAttribute("data-max-bytes"), 10);

  function fail(message) {
    status.textContent = message;
    status.className = "fr-mt-1w fr-error-text";
    button.disabled = false;
    bar.hidden = true;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var file = input.files[0];
    if (!file) { fail("Choisissez un fichier."); return; }
    if (file.size === 0) { fail("Fichier vide : il n'a pas été envoyé."); return; }
    if (file.size > maxBytes) { fail("Fichier trop volumineux : il n'a pas été envoyé."); return; }
    var url = form.getAttribute("data-upload-url") + "?espace=" +
      encodeURIComponent(document.getElementById("espace").value);
    var type = document.getElementById("type").value;
    if (type) { url += "&type=" + encodeURIComponent(type); }
    button.disabled = true;
    bar.hidden = false;
    bar.value = 0;
    status.className = "fr-mt-1w";
    status.textContent = "Envoi…";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRFToken", form.getAttribute("data-csrf"));
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (ev) {
      if (ev.lengthComputable) {
        bar.value = Math.round(100 * ev.loaded / ev.total);
        status.textContent = bar.value < 100 ? "Envoi : " + bar.value + " %" : "Vérification du fichier…";
      }
    });
    xhr.addEventListener("load", function () {
      var body = {};
      try { body = JSON.parse(xhr.responseText); } catch (err) { /* keep empty */ }
      if (body.url) { window.location.assign(body.url); return; }
      fail(body.error || "Échec de l'envoi.");
    });
    xhr.addEventListener("error", function () {
      fail("Connexion interrompue : le fichier n'a pas été enregistré. Réessayez.");
    });
    xhr.send(file);
  });
}());
