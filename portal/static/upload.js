// Drag-and-drop upload: one raw request per file (streamed and encrypted by the server as it
// arrives), a progress bar per file, and the server's French error shown next to the file.
// With resumable uploads on (data-tus-url), each file goes in pieces with tus-js-client (tus
// 1.0.0, /vendor/tus.min.js): a network cut or a server restart is retried from the last piece
// stored; offline, the upload waits for the network to come back.
(function () {
  "use strict";
  var zone = document.getElementById("dropzone");
  if (!zone) { return; }
  var input = document.getElementById("file-input");
  var list = document.getElementById("upload-list");
  var sendButton = document.getElementById("send-deposit");
  var maxBytes = parseInt(zone.getAttribute("data-max-bytes"), 10);
  var tusUrl = zone.getAttribute("data-tus-url");
  var chunkBytes = parseInt(zone.getAttribute("data-chunk-bytes") || "0", 10);
  // Waits between tries after a cut (ms): about five minutes in all before giving up.
  var RETRY_DELAYS = [0, 1000, 2000, 3000, 5000, 5000, 10000, 10000, 15000, 20000, 30000, 30000, 60000, 60000, 60000];
  var pending = 0;

  function setBusy(delta) {
    pending += delta;
    if (sendButton) { sendButton.disabled = pending > 0; }
  }

  function row(file) {
    var li = document.createElement("li");
    var label = document.createElement("p");
    label.className = "fr-mb-1v";
    label.textContent = file.name;
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    bar.setAttribute("aria-label", "Progression de " + file.name);
    var status = document.createElement("p");
    status.className = "fr-text--sm fr-mb-0";
    li.appendChild(label); li.appendChild(bar); li.appendChild(status);
    list.appendChild(li);
    return { li: li, bar: bar, status: status };
  }

  function fail(ui, message) {
    ui.li.classList.add("portal-upload--error");
    ui.status.textContent = message;
    ui.bar.value = 0;
  }

  function done(ui, sha256) {
    ui.bar.value = 100;
    ui.status.textContent = "Envoyé et chiffré." + (sha256 ? " Empreinte SHA-256 : " + sha256 : "");
    if (sha256) { ui.li.setAttribute("data-sha256", sha256); }
    ui.li.setAttribute("data-uploaded", "true");
  }

  function percent(ui, sent, total) {
    ui.bar.value = Math.floor(100 * sent / total);
    ui.status.textContent = ui.bar.value + " %";
  }

  function serverError(body, fallback) {
    try { return JSON.parse(body).error || fallback; } catch (err) { return fallback; }
  }

  function resumableUpload(file, ui) {
    var waiting = false;
    var upload = new window.tus.Upload(file, {
      endpoint: tusUrl,
      chunkSize: chunkBytes,
      retryDelays: RETRY_DELAYS,
      metadata: { filename: file.name },
      headers: { "X-CSRFToken": zone.getAttribute("data-csrf") },
      // Nothing kept in the browser's storage (it would hold the file's name): a cut is
      // resumed by this page, which keeps the upload's address while it is open.
      storeFingerprintForResuming: false,
      onProgress: function (sent, total) {
        if (ui.li.classList.contains("portal-upload--interrupted")) {
          ui.li.classList.remove("portal-upload--interrupted");
        }
        percent(ui, sent, total);
      },
      onShouldRetry: function (err) {
        var status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        if (status >= 400 && status < 500 && status !== 409 && status !== 423) { return false; }
        if (!navigator.onLine) { return false; }  // waits for the "online" event instead
        ui.li.classList.add("portal-upload--interrupted");
        ui.status.textContent = "Connexion interrompue : nouvelle tentative en cours (" + ui.bar.value + " % déjà envoyés)…";
        return true;
      },
      onSuccess: function (payload) {
        setBusy(-1);
        var response = payload && payload.lastResponse;
        done(ui, response ? response.getHeader("Filr-File-Sha256") : "");
      },
      onError: function (err) {
        var response = err.originalResponse;
        var status = response ? response.getStatus() : 0;
        if (status === 0 && !waiting) {
          // A cut that outlasted the tries, or the browser offline: go on when the network is back.
          waiting = true;
          ui.li.classList.add("portal-upload--interrupted");
          ui.status.textContent = "Connexion interrompue : l'envoi reprendra dès le retour du réseau (" + ui.bar.value + " % déjà envoyés).";
          var resume = function () {
            window.removeEventListener("online", resume);
            waiting = false;
            ui.status.textContent = "Reprise de l'envoi…";
            upload.start();
          };
          if (navigator.onLine) { window.setTimeout(resume, 5000); } else { window.addEventListener("online", resume); }
          return;
        }
        setBusy(-1);
        fail(ui, response ? serverError(response.getBody(), "Échec de l'envoi.") : "Échec de l'envoi.");
      }
    });
    upload.start();
  }

  function upload(file) {
    var ui = row(file);
    if (file.size === 0) { fail(ui, "Fichier vide : il n'a pas été envoyé."); return; }
    if (file.size > maxBytes) { fail(ui, "Fichier trop volumineux : il n'a pas été envoyé."); return; }
    setBusy(1);
    if (tusUrl && chunkBytes > 0 && window.tus && window.tus.isSupported) {
      resumableUpload(file, ui);
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", zone.getAttribute("data-upload-url"));
    xhr.setRequestHeader("X-CSRFToken", zone.getAttribute("data-csrf"));
    xhr.setRequestHeader("X-Filename", encodeURIComponent(file.name));
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) { percent(ui, e.loaded, e.total); }
    });
    xhr.addEventListener("load", function () {
      setBusy(-1);
      if (xhr.status === 201) {
        var sha256 = "";
        try { sha256 = JSON.parse(xhr.responseText).sha256 || ""; } catch (err) { /* none shown */ }
        done(ui, sha256);
        return;
      }
      var message = "Échec de l'envoi.";
      try { message = JSON.parse(xhr.responseText).error || message; } catch (err) { /* keep default */ }
      fail(ui, message);
    });
    xhr.addEventListener("error", function () {
      setBusy(-1);
      fail(ui, "Connexion interrompue : le fichier n'a pas été enregistré. Réessayez.");
    });
    xhr.send(file);
  }

  function handle(files) {
    for (var i = 0; i < files.length; i++) { upload(files[i]); }
  }

  input.addEventListener("change", function () { handle(input.files); input.value = ""; });
  zone.addEventListener("dragover", function (e) { e.preventDefault(); zone.classList.add("portal-dropzone--over"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("portal-dropzone--over"); });
  zone.addEventListener("drop", function (e) {
    e.preventDefault();
    zone.classList.remove("portal-dropzone--over");
    handle(e.dataTransfer.files);
  });
})();
